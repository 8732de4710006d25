"""A user's own GeoTIFF for an area and month: checked, stored, then processed like any input."""

from __future__ import annotations

import asyncio
import hashlib
from typing import TYPE_CHECKING

from earthkeep.catalog.db import translate_errors
from earthkeep.errors import InvalidInput, NotFound
from earthkeep.nightlights import keys
from earthkeep.nightlights.months import month_range
from earthkeep.nightlights.requests import UPLOAD, get_request, open_request, record_input
from earthkeep.nightlights.tables import Area, Request
from earthkeep.raster.geotiff import inspect_geotiff

if TYPE_CHECKING:
    from earthkeep.runtime import Services


async def submit_upload(services: Services, area_id: int, month: str, data: bytes, *,
                        trace_id: str | None = None) -> Request:
    """Store ``data`` as the area's input for ``month`` and queue its processing.

    The GeoTIFF must be georeferenced (any CRS; it is resampled onto the 15"
    lon/lat grid) and overlap the area; radiance in nW·cm⁻²·sr⁻¹ in band 1.
    """
    month_range(month, month, max_months=1)
    with translate_errors("nightlights"), services.sessions() as s:
        area = s.get(Area, area_id)
        if area is None:
            raise NotFound(f"no area {area_id}")
        bounds = (area.west, area.south, area.east, area.north)
    if not data:
        raise InvalidInput("the upload is empty; send the GeoTIFF as the request body")
    info = await asyncio.to_thread(inspect_geotiff, data, "upload")
    w, s_, e, n = info.bounds_wgs84
    if w >= bounds[2] or e <= bounds[0] or s_ >= bounds[3] or n <= bounds[1]:
        raise InvalidInput(f"the GeoTIFF covers {info.bounds_wgs84}, which does not overlap area {area_id}")
    digest = hashlib.sha256(data).hexdigest()
    key = keys.input_key(area_id, month, f"upload-{digest[:16]}.tif")
    await services.store.put(key, data, content_type="image/tiff")
    await asyncio.to_thread(record_input, services, area_id, month, UPLOAD, job_id=None, files=[key],
                            details={"sha256": digest, "bytes": len(data), "crs": info.crs})
    req = await asyncio.to_thread(open_request, services, area_id, UPLOAD, [month], [], trace_id)
    return get_request(services, req.id)
