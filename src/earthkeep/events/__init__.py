"""Events: one is emitted for every new catalog item and finished run."""

from earthkeep.events.base import Bus, Event

__all__ = ["Bus", "Event"]
