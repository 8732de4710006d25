"""An area's coverage weights: computed once, then read from memory or the store; a new geometry is a new key."""

from types import SimpleNamespace

import numpy as np
import pytest
from shapely.geometry import box

from earthkeep.nightlights import keys, processing
from earthkeep.nightlights.domain import DOMAIN, NightlightsState
from earthkeep.raster.grid import snap
from earthkeep.raster.zonal import CoverageWeights
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

    def domain_state(self, ctx):
        assert ctx.domain is DOMAIN
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
