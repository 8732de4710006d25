"""Map tiles of monthly composites: rendered on demand with rio-tiler, cached in the store."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from earthkeep.catalog.db import translate_errors
from earthkeep.errors import NotFound
from earthkeep.nightlights import keys
from earthkeep.nightlights.months import parse_month
from earthkeep.nightlights.requests import nl_settings
from earthkeep.nightlights.results import get_result
from earthkeep.nightlights.state import state as nl_state
from earthkeep.nightlights.tables import Area
from earthkeep.raster.grid import BLACK_MARBLE_RES, snap
from earthkeep.raster.tiles import Style, render_tile, tile_bounds_ok, tilejson, zoom_range

if TYPE_CHECKING:
    from earthkeep.runtime import Services

_COG_CACHE_ENTRIES = 8


def _lookup(services: Services, area_id: int, month: str) -> tuple[Area, str]:
    parse_month(month)
    with translate_errors("nightlights"), services.sessions() as s:
        area = s.get(Area, area_id)
        if area is None:
            raise NotFound(f"no area {area_id}")
        result = get_result(s, area_id, month)
        if result is None or not result.composite_key:
            raise NotFound(f"area {area_id} has no composite for {month}; submit a nightlights job first")
        return area, result.composite_key


def zooms(services: Services, area: Area) -> tuple[int, int]:
    settings = nl_settings(services)
    return zoom_range((area.west, area.south, area.east, area.north), BLACK_MARBLE_RES, settings.tile_max_zoom)


async def get_tile(services: Services, area_id: int, month: str, z: int, x: int, y: int) -> tuple[bytes, bool]:
    """The PNG of tile z/x/y and whether it came from the cache (rendered and stored when missing)."""
    area, cog_key = await asyncio.to_thread(_lookup, services, area_id, month)
    low, high = zooms(services, area)
    if not low <= z <= high:
        raise NotFound(f"zoom {z} is outside this area's range {low}-{high}")
    bounds = snap((area.west, area.south, area.east, area.north)).bounds
    if not tile_bounds_ok(bounds, z, x, y):
        raise NotFound(f"tile {z}/{x}/{y} does not touch area {area_id}")
    key = keys.tile_key(area_id, month, z, x, y)
    try:
        return await services.store.get(key), True
    except NotFound:
        pass
    cog = await _cog(services, cog_key)
    settings = nl_settings(services)
    png = await asyncio.to_thread(render_tile, cog, z, x, y, Style(settings.tile_vmax, settings.colormap))
    await services.store.put(key, png, content_type="image/png")
    return png, False


async def _cog(services: Services, key: str) -> bytes:
    """COG bytes, kept for the last few composites (invalidated by size and etag)."""
    cache = nl_state(services).cogs
    info = await services.store.head(key)
    stamp = (info.size, info.etag, info.sha256)
    hit = cache.get(key)
    if hit is not None and hit[0] == stamp:
        cache.move_to_end(key)
        return hit[1]
    data = await services.store.get(key)
    cache[key] = (stamp, data)
    while len(cache) > _COG_CACHE_ENTRIES:
        cache.popitem(last=False)
    return data


async def get_tilejson(services: Services, area_id: int, month: str, base_url: str) -> dict[str, Any]:
    area, _ = await asyncio.to_thread(_lookup, services, area_id, month)
    template = f"{base_url.rstrip('/')}/tiles/{area_id}/{month}/{{z}}/{{x}}/{{y}}.png"
    return tilejson(f"{area.name} {month}", template, (area.west, area.south, area.east, area.north),
                    zooms(services, area), attribution="NASA Black Marble VNP46A2")
