"""Pass direction from orbital elements (pyorbital), and the elements file kept up to date.

The elements file (three-line TLE sets, e.g. Celestrak ``weather.txt``) is
fetched by the transfer engine into the store under :data:`TLE_KEY` on a
schedule; :class:`Elements` reads it from there. A pass is *ascending* when the
satellite moves north at the middle of the granules (the z component of its
ECI velocity is positive), *descending* otherwise, and *unknown* when the file
has no elements for the platform.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from earthkeep.errors import NotFound
from earthkeep.sources.gina import PLATFORMS
from earthkeep.transfer.engine import TransferRequest

if TYPE_CHECKING:
    from earthkeep.runtime import Services
    from earthkeep.store.base import Store

log = structlog.get_logger(__name__)
TLE_KEY = "viirs/elements/noaa.txt"
TLE_NAMES = {p.name: p.tle for p in PLATFORMS.values()}


def parse_tle(text: str) -> dict[str, tuple[str, str]]:
    """Name -> (line 1, line 2) of every three-line set (names upper-cased, trailing ``(...)`` kept too)."""
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    out: dict[str, tuple[str, str]] = {}
    for i in range(len(lines) - 2):
        name, l1, l2 = lines[i], lines[i + 1], lines[i + 2]
        if l1.startswith("1 ") and l2.startswith("2 ") and not name.startswith(("1 ", "2 ")):
            key = name.strip().upper()
            out[key] = (l1, l2)
            out.setdefault(key.split("(")[0].strip(), (l1, l2))
    return out


@dataclass
class Elements:
    """Orbital elements by TLE name; computes pass directions with pyorbital."""

    sets: dict[str, tuple[str, str]] = field(default_factory=dict)
    _orbitals: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_text(cls, text: str) -> Elements:
        return cls(parse_tle(text))

    @classmethod
    async def from_store(cls, store: Store) -> Elements:
        """The stored elements file, or no elements when it was never fetched."""
        try:
            return cls.from_text((await store.get(TLE_KEY)).decode("ascii", "replace"))
        except NotFound:
            log.warning("granules.no_elements", key=TLE_KEY)
            return cls()

    def orbital(self, platform_name: str) -> Any | None:
        from pyorbital.orbital import Orbital

        tle = TLE_NAMES.get(platform_name, platform_name).upper()
        if tle not in self.sets:
            return None
        if tle not in self._orbitals:
            l1, l2 = self.sets[tle]
            self._orbitals[tle] = Orbital(tle, line1=l1, line2=l2)
        return self._orbitals[tle]

    def direction(self, platform_name: str, when: datetime) -> str:
        """``ascending``, ``descending`` or ``unknown`` for ``platform_name`` at ``when`` (UTC)."""
        orb = self.orbital(platform_name)
        if orb is None:
            return "unknown"
        naive = when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo else when
        _, vel = orb.get_position(naive, normalize=False)
        return "ascending" if float(vel[2]) > 0 else "descending"


async def refresh_elements(services: Services, url: str) -> int:
    """Fetch the elements file through the transfer engine into the store; its size."""
    async with services.transfer() as engine:
        res = await engine.fetch(TransferRequest(url=url, key=TLE_KEY, content_type="text/plain"))
    log.info("granules.elements_refreshed", url=url, bytes=res.size)
    return int(res.size)
