"""Where the nightlights domain keeps its objects in the store."""

from __future__ import annotations

from earthkeep.store.keys import safe_key

ROOT = "nightlights"


def raw_key(collection: str, year: int, doy: int, name: str) -> str:
    """A VNP46A2 daily tile from LAADS (shared by every area)."""
    return safe_key(f"{ROOT}/raw/VNP46A2/{collection}/{year:04d}/{doy:03d}/{name}")


def input_key(area_id: int, month: str, name: str) -> str:
    """An area's own input for a month (Earth Engine export, user upload)."""
    return safe_key(f"{ROOT}/inputs/{area_id}/{month}/{name}")


def composite_key(area_id: int, month: str) -> str:
    return safe_key(f"{ROOT}/composites/{area_id}/{month}.tif")


def tile_prefix(area_id: int, month: str | None = None) -> str:
    return f"{ROOT}/tiles/{area_id}/" + (f"{month}/" if month else "")


def tile_key(area_id: int, month: str, z: int, x: int, y: int) -> str:
    return safe_key(f"{tile_prefix(area_id, month)}{z}/{x}/{y}.png")


def weights_key(area_id: int, digest: str) -> str:
    """An area's coverage weights on one grid (``CoverageWeights.to_bytes``)."""
    return safe_key(f"{ROOT}/weights/{area_id}/{digest}.bin")


def weights_set_key(digest: str) -> str:
    """The stacked coverage weights of a set of areas on one grid (``StackedWeights.to_bytes``); the
    digest names the geometries and the grid, not the areas, so no area's prefix holds it."""
    return safe_key(f"{ROOT}/weights/sets/{digest}.bin")


def area_prefixes(area_id: int) -> list[str]:
    """Every prefix holding objects derived from one area."""
    return [f"{ROOT}/{kind}/{area_id}/" for kind in ("inputs", "composites", "tiles", "weights")]
