"""The segment gatherer: files of one granule time slot become one product dataset.

Per product (see :class:`~earthkeep.granules.settings.Product`): a slot is
opened by the first file of a wanted segment for (platform, orbit, start time
within ``time_tolerance_s``). The slot is published as a ``dataset`` message
as soon as every wanted segment is there; when ``timeliness_s`` has passed
since it opened, it is published with what it has if every required segment
is there, and dropped otherwise.

Why not ``pytroll_collectors.segments.SegmentGatherer``: it is built around its
own posttroll listener threads and ini/YAML configuration, reaches into private
attributes, parses names with trollsift (which accepts ``../`` in a segment and
loses the tenths of a second of VIIRS times), and would have to be driven through
undocumented internals. This gatherer is ~100 lines, takes the already-parsed
file messages and uses the same product configuration keys.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from earthkeep.granules.settings import Product

log = structlog.get_logger(__name__)
GATHERER_KEY = "viirs/status/gatherer.json"  # the collector's snapshot of the open slots


@dataclass
class Slot:
    product: Product
    platform_name: str
    orbit_number: int
    start_time: datetime
    opened: float
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    def matches(self, platform: str, orbit: int, start: datetime) -> bool:
        return (platform == self.platform_name and orbit == self.orbit_number
                and abs((start - self.start_time).total_seconds()) <= self.product.time_tolerance_s)

    def complete(self) -> bool:
        return set(self.product.wanted) <= set(self.files)

    def publishable(self) -> bool:
        return set(self.product.required) <= set(self.files)


@dataclass(frozen=True)
class Dataset:
    """A finished slot: the ``dataset`` message to publish."""

    product: str
    subject: str
    data: dict[str, Any]


class Gatherer:
    """Feed it file messages (:meth:`add`), call :meth:`expire` now and then; both return finished datasets."""

    def __init__(self, products: list[Product], topic_prefix: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.products, self.prefix, self.clock = products, topic_prefix, clock
        self.slots: list[Slot] = []
        self.dropped = 0

    def add(self, data: dict[str, Any]) -> list[Dataset]:
        """One ``file`` message's data (JSON form); datasets completed by it."""
        segment = data.get("segment")
        start = datetime.fromisoformat(str(data["start_time"]))
        out = []
        for product in self.products:
            if segment not in product.wanted:
                continue
            slot = self._slot(product, str(data["platform_name"]), int(data["orbit_number"]), start)
            slot.files[str(segment)] = data
            if slot.complete():
                self.slots.remove(slot)
                out.append(self._dataset(slot))
        return out

    def _slot(self, product: Product, platform: str, orbit: int, start: datetime) -> Slot:
        for slot in self.slots:
            if slot.product is product and slot.matches(platform, orbit, start):
                return slot
        slot = Slot(product, platform, orbit, start, self.clock())
        self.slots.append(slot)
        return slot

    def snapshot(self) -> dict[str, Any]:
        """The open slots (product, platform, orbit, start, segments there and missing, age) and the drops."""
        now = self.clock()
        return {"dropped": self.dropped, "slots": [
            {"product": s.product.name, "platform_name": s.platform_name, "orbit_number": s.orbit_number,
             "start_time": s.start_time.isoformat(), "segments": sorted(s.files),
             "missing": sorted(set(s.product.wanted or s.product.required) - set(s.files)),
             "required_there": all(seg in s.files for seg in s.product.required),
             "age_s": round(now - s.opened, 1), "timeliness_s": s.product.timeliness_s}
            for s in self.slots]}

    def expire(self) -> list[Dataset]:
        """Slots past their timeliness: published when the required segments are there, else dropped."""
        now, out, keep = self.clock(), [], []
        for slot in self.slots:
            if now - slot.opened < slot.product.timeliness_s:
                keep.append(slot)
            elif slot.publishable():
                out.append(self._dataset(slot))
            else:
                self.dropped += 1
                log.warning("granules.slot_dropped", product=slot.product.name, platform=slot.platform_name,
                            orbit=slot.orbit_number, start=slot.start_time.isoformat(),
                            missing=sorted(set(slot.product.required) - set(slot.files)))
        self.slots = keep
        return out

    def _dataset(self, slot: Slot) -> Dataset:
        files = sorted(slot.files.values(), key=lambda d: d["segment"])
        first = files[0]
        data = {
            "product": slot.product.name,
            "platform_name": slot.platform_name,
            "orig_platform_name": first.get("orig_platform_name"),
            "sensor": first.get("sensor", ["viirs"]),
            "orbit_number": slot.orbit_number,
            "start_time": min(str(f["start_time"]) for f in files),
            "end_time": max(str(f["end_time"]) for f in files),
            "segments": [f["segment"] for f in files],
            "dataset": [{"uid": f["uid"], "uri": f["uri"], "segment": f["segment"],
                         "start_time": f["start_time"]} for f in files],
        }
        return Dataset(slot.product.name, slot.product.topic(self.prefix), data)
