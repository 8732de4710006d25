"""The three settings sections the granules domain reads, as one value passed down."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from earthkeep.granules.settings import GranuleSettings, MailSettings, ViirsSettings
from earthkeep.sources.gina import Selection

if TYPE_CHECKING:
    from earthkeep.config import Settings


@dataclass(frozen=True)
class GranuleConfig:
    """``core``: the collector's env names; ``viirs``: earthkeep's additions; ``mail``: error e-mails."""

    core: GranuleSettings
    viirs: ViirsSettings
    mail: MailSettings

    @classmethod
    def of(cls, settings: Settings) -> GranuleConfig:
        """From the effective settings."""
        return cls(settings.of(GranuleSettings), settings.of(ViirsSettings), settings.of(MailSettings))

    def selection(self, backfill_days: int | None = None) -> Selection:
        """What a mirror run asks GINA for."""
        days = self.core.backfill_days if backfill_days is None else backfill_days
        return Selection(self.core.facility, tuple(self.viirs.platforms), tuple(self.viirs.segments), days)
