"""A bounded in-memory set of recently written observation keys (by count and by age).

Keys are remembered in generations, one per :meth:`DedupeCache.add_many` call
(one committed batch): the age of a key is the age of the batch that last added
it, and eviction walks the oldest generation first. Adding a batch is one dict
update in C; a lookup is one dict membership test, so the consumer can filter a
batch of thousands of records at the cost of a set lookup each.

The consumers of one process share a cache, and it also knows the keys of the
batches they have in flight (:meth:`DedupeCache.claim`, by the batch that owns
them): a record whose key another batch is writing right now is dropped too,
and the claim names the batches it now depends on. The consumer acknowledges
its messages only after those batches wrote their rows; if one of them failed,
it naks its messages instead, so a dropped record is always either written by
its owner or delivered again. (Without that, a message redelivered while its
first delivery is still being written would be acknowledged empty, and a
failure of the first write would lose it.)
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Container, Hashable, Iterable, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import TypeVar

T = TypeVar("T")


def first_by_key(items: Sequence[T], key: Callable[[T], Hashable]) -> dict[Hashable, T]:
    """``key(item) -> item`` for the first item of each key (built in C: dict() keeps the last it sees)."""
    backwards = items[::-1]
    return dict(zip(map(key, backwards), backwards, strict=True))


@dataclass
class _Generation:
    number: int
    added: float
    keys: list[Hashable]
    next: int = 0  # keys before this index were already evicted


class DedupeCache:
    """Remembers up to ``max_items`` keys for at most ``max_age_s`` seconds, oldest evicted first.

    The consumer adds keys only *after* their batch committed, so a batch that
    failed and is redelivered is never dropped here by mistake; the database's
    ``ON CONFLICT DO NOTHING`` stays the final word.
    """

    def __init__(self, max_items: int, max_age_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_items = max_items
        self.max_age_s = max_age_s
        self._clock = clock
        self._seen: dict[Hashable, int] = {}  # key -> number of the generation that last added it
        self._generations: deque[_Generation] = deque()
        self._number = 0
        self._in_flight: dict[Hashable, Hashable] = {}  # key -> the batch writing it

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, key: object) -> bool:
        self.sweep()
        return key in self._seen

    def recent(self) -> Container[Hashable]:
        """The keys remembered now (swept by age first), for many fast lookups until the next change."""
        self.sweep()
        return self._seen.keys()

    def claim(self, items: dict[Hashable, T], owner: Hashable) -> tuple[dict[Hashable, T], set[Hashable]]:
        """``items`` (key -> item) without the keys written recently or in flight, and the owners of the latter.

        The kept keys are in flight for ``owner`` until :meth:`settle`. Set
        operations in C: a batch of thousands costs a few dict operations, not a
        Python step per key (only keys found in flight are looked at one by one).
        """
        recent, flying = self.recent(), self._in_flight
        for key in items.keys() & recent:
            del items[key]
        depends: set[Hashable] = set()
        for key in items.keys() & flying.keys():
            depends.add(flying[key])
            del items[key]
        flying.update(zip(items, repeat(owner)))
        return items, depends

    def settle(self, keys: Iterable[Hashable], owner: Hashable, *, written: bool) -> None:
        """End ``owner``'s flight of its claimed ``keys``; remember them when they were ``written``."""
        batch = keys if isinstance(keys, list) else list(keys)
        flying = self._in_flight
        for key in batch:
            if flying.get(key) is owner:
                del flying[key]
        if written:
            self.add_many(batch)

    def add_many(self, keys: Iterable[Hashable]) -> None:
        """Remember ``keys`` as seen now, then evict by age and by count."""
        if self.max_items <= 0:
            return
        batch = list(keys)
        if not batch:
            return
        self._number += 1
        self._generations.append(_Generation(self._number, self._clock(), batch))
        self._seen.update(zip(batch, repeat(self._number)))
        self.sweep()

    def sweep(self) -> None:
        """Forget generations older than ``max_age_s``, then the oldest keys beyond ``max_items``."""
        gens = self._generations
        horizon = self._clock() - self.max_age_s
        while gens and gens[0].added < horizon:
            self._evict(gens.popleft(), None)
        while gens and len(self._seen) > self.max_items:
            oldest = gens[0]
            self._evict(oldest, len(self._seen) - self.max_items)
            if oldest.next >= len(oldest.keys):
                gens.popleft()

    def _evict(self, gen: _Generation, count: int | None) -> None:
        """Forget up to ``count`` (all when None) of ``gen``'s keys, unless a newer batch added them again."""
        seen, number = self._seen, gen.number
        stop = len(gen.keys)
        i = gen.next
        while i < stop and (count is None or count > 0):
            key = gen.keys[i]
            i += 1
            if seen.get(key) == number:
                del seen[key]
                if count is not None:
                    count -= 1
        gen.next = i
