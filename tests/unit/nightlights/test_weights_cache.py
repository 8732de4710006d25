"""An area's coverage weights: computed once, then read from memory or the store; a new geometry is a new key."""

from types import SimpleNamespace

import numpy as np
import pytest
import structlog
from shapely.geometry import box

from earthkeep.nightlights import keys, processing
from earthkeep.nightlights.domain import DOMAIN, NightlightsState
from earthkeep.raster.grid import snap
from earthkeep.raster.zonal import CoverageWeights, StackedWeights, coverage_weights, stack_weights
from earthkeep.store.memory import MemoryStore

GEOM = box(36.601, -1.499, 36.853, -1.248)
WEIGHTS = f"{keys.ROOT}/weights/7/"


@pytest.fixture
def computed(monkeypatch):
    """The grids that exactextract was asked about (each a real computation)."""
    grids = []
    real = processing.coverage_weights

    def counting(geometries, grid):
        grids.append(grid)
        return real(geometries, grid)

    monkeypatch.setattr(processing, "coverage_weights", counting)
    return grids


class _Worker:
    """What the weights use of a process's services: the store and the nightlights domain's state."""

    def __init__(self) -> None:
        self.store = MemoryStore()
        self.restart()

    def restart(self) -> None:
        """A new worker: nothing in memory, the store still holds what was put there."""
        self.state = NightlightsState()

    def domain_state(self, name, factory):
        assert name == DOMAIN.name and factory is NightlightsState
        return self.state


def _services():
    return _Worker()


def _same(a, b):
    for name in ("cells", "coverage", "cell_area_km2"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.grid_digest == b.grid_digest


async def test_weights_are_computed_once_then_read_from_memory_or_the_store(computed):
    svc, area, grid = _services(), SimpleNamespace(id=7, geom=GEOM), snap(GEOM.bounds)
    first = await processing.area_weights(svc, area, grid)
    assert len(computed) == 1 and first.cells.size > 0
    assert await processing.area_weights(svc, area, grid) is first  # the same worker: memory
    svc.restart()  # a new worker: nothing in memory, the store still holds them
    _same(await processing.area_weights(svc, area, grid), first)
    assert len(computed) == 1
    assert [o.key for o in await svc.store.list(WEIGHTS)] == [
        keys.weights_key(7, f"{processing.geometry_digest(GEOM)}-{grid.digest()}")
    ]


async def test_another_geometry_or_grid_is_computed_anew(computed):
    svc, grid = _services(), snap(GEOM.bounds)
    first = await processing.area_weights(svc, SimpleNamespace(id=7, geom=GEOM), grid)
    moved = box(36.611, -1.499, 36.853, -1.248)  # the area edited: same id, another geometry
    second = await processing.area_weights(svc, SimpleNamespace(id=7, geom=moved), snap(moved.bounds))
    wider = snap((36.5, -1.6, 36.9, -1.2))
    third = await processing.area_weights(svc, SimpleNamespace(id=7, geom=GEOM), wider)
    assert len(computed) == 3 and len(await svc.store.list(WEIGHTS)) == 3
    assert first.coverage.sum() != pytest.approx(second.coverage.sum())
    assert third.grid_digest == wider.digest() and first.grid_digest == grid.digest()
    np.testing.assert_allclose(first.coverage.sum(), third.coverage.sum(), rtol=1e-9)  # same shape, other grid
    assert await processing.purge_objects(svc, 7) == 3
    await processing.area_weights(svc, SimpleNamespace(id=7, geom=GEOM), grid)  # purged: memory and store
    assert len(computed) == 4


async def test_an_unreadable_stored_copy_is_computed_again_and_replaced(computed):
    svc, area, grid = _services(), SimpleNamespace(id=7, geom=GEOM), snap(GEOM.bounds)
    first = await processing.area_weights(svc, area, grid)
    [obj] = await svc.store.list(WEIGHTS)
    await svc.store.put(obj.key, (await svc.store.get(obj.key))[:-5])  # cut short
    svc.restart()
    _same(await processing.area_weights(svc, area, grid), first)
    assert len(computed) == 2
    _same(CoverageWeights.from_bytes(await svc.store.get(obj.key)), first)


AREAS = [
    SimpleNamespace(id=7, geom=GEOM),
    SimpleNamespace(id=8, geom=box(36.62, -1.45, 36.70, -1.30)),
    SimpleNamespace(id=9, geom=box(36.75, -1.40, 36.84, -1.26).buffer(0.01)),
]
SETS = f"{keys.ROOT}/weights/sets/"


def _same_stack(a, b):
    for name in ("cells", "coverage", "covered_km2", "offsets", "area_km2"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.grid_digest == b.grid_digest


async def test_the_weights_of_a_set_of_areas_are_one_stored_object(computed):
    svc, grid = _services(), snap(GEOM.bounds)
    expected = stack_weights(coverage_weights([a.geom for a in AREAS], grid))
    first = await processing.stacked_area_weights(svc, AREAS, grid)
    _same_stack(first, expected)
    assert len(computed) == 3  # each area once (and each area's own object stored)
    assert await processing.stacked_area_weights(svc, AREAS, grid) is first  # the same worker: memory
    svc.restart()  # a new worker: one read of the set's object
    reads = []
    real_get = svc.store.get

    async def get(key):
        reads.append(key)
        return await real_get(key)

    svc.store.get = get
    _same_stack(await processing.stacked_area_weights(svc, AREAS, grid), first)
    assert len(computed) == 3 and len(reads) == 1 and reads[0].startswith(SETS)
    assert len(await svc.store.list(SETS)) == 1 and len(await svc.store.list(WEIGHTS)) == 1
    # another order, another grid, an edited area: other sets, never the stored one
    _same_stack(
        await processing.stacked_area_weights(svc, AREAS[::-1], grid),
        stack_weights(coverage_weights([a.geom for a in AREAS[::-1]], grid)),
    )
    moved = [*AREAS[:2], SimpleNamespace(id=9, geom=box(36.75, -1.40, 36.84, -1.27))]
    edited = await processing.stacked_area_weights(svc, moved, grid)
    assert edited.area_km2[2] != pytest.approx(first.area_km2[2]) and len(await svc.store.list(SETS)) == 3


@pytest.mark.parametrize("damage", ["cut", "flipped bit", "other bytes", "deleted"])
async def test_an_unreadable_or_missing_set_is_built_again_from_the_areas_logged_and_replaced(computed, damage):
    svc, grid = _services(), snap(GEOM.bounds)
    first = await processing.stacked_area_weights(svc, AREAS, grid)
    [obj] = await svc.store.list(SETS)
    data = await svc.store.get(obj.key)
    if damage == "deleted":
        await svc.store.delete(obj.key)
    else:
        bad = {
            "cut": data[:-8],
            "flipped bit": data[:-100] + bytes([data[-100] ^ 0x10]) + data[-99:],
            "other bytes": first.to_bytes().replace(b"EKSW", b"EKCW", 1),
        }[damage]
        await svc.store.put(obj.key, bad)
    svc.restart()
    with structlog.testing.capture_logs() as logs:
        _same_stack(await processing.stacked_area_weights(svc, AREAS, grid), first)
    unreadable = [e for e in logs if e["event"] == "nightlights.weights_unreadable"]
    assert [e["key"] for e in unreadable] == ([] if damage == "deleted" else [obj.key])
    assert len(computed) == 3  # built from each area's stored weights, not computed again
    _same_stack(StackedWeights.from_bytes(await svc.store.get(obj.key)), first)  # replaced


async def test_purging_an_area_forgets_the_sets_it_is_in(computed):
    svc, grid = _services(), snap(GEOM.bounds)
    first = await processing.stacked_area_weights(svc, AREAS, grid)
    other = await processing.stacked_area_weights(svc, AREAS[:2], grid)
    await processing.purge_objects(svc, 9)
    assert await processing.stacked_area_weights(svc, AREAS[:2], grid) is other  # area 9 is not in it
    again = await processing.stacked_area_weights(svc, AREAS, grid)
    assert again is not first
    _same_stack(again, first)
