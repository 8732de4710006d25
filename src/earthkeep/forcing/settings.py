"""Settings of the forcing domain: sections ``[forcing]`` and ``[forcing_sources]``.

:class:`ForcingSettings` (``[forcing]``) keeps the Data Aggregator's own names
(``HISTORICAL_DAYS``, ``FORECAST_HOURS``, ``FORECAST_INTERVAL_HOURS``,
``COLLECTION_SCHEDULE``, ``CLEANUP_SCHEDULE``, ``MAX_DATA_AGE_DAYS``,
``COPERNICUS_USERNAME``/``PASSWORD``); :class:`ForcingSourcesSettings` adds
where the data comes from: GFS mirrors and inventory patterns, the Copernicus
Marine dataset, the bounding box and depth of currents, and concurrency. Every
environment name of the latter starts with ``FORCING_``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from earthkeep.catalog.bbox import check_bbox
from earthkeep.config import Section, check_cron
from earthkeep.errors import InvalidInput
from earthkeep.sources.gfs import MIRRORS

if TYPE_CHECKING:
    from earthkeep.config import Settings


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


def _split(value: Any) -> Any:
    """Accept a comma-separated string (or a JSON list) for list settings."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [v.strip() for v in text.split(",") if v.strip()]
    return value


Names = Annotated[list[str], NoDecode]


class ForcingSettings(Section):
    """GFS wind and Copernicus Marine currents (the Data Aggregator's names)."""

    section: ClassVar[str] = "forcing"
    copernicus_username: str | None = Field(None, validation_alias=_env("COPERNICUS_USERNAME", "copernicus_username"))
    copernicus_password: SecretStr | None = Field(
        None, validation_alias=_env("COPERNICUS_PASSWORD", "copernicus_password")
    )
    historical_days: int = Field(7, ge=0, le=366, validation_alias=_env("HISTORICAL_DAYS", "historical_days"))
    forecast_hours: int = Field(120, ge=0, le=384, validation_alias=_env("FORECAST_HOURS", "forecast_hours"))
    forecast_interval_hours: int = Field(
        3, ge=1, le=24, validation_alias=_env("FORECAST_INTERVAL_HOURS", "forecast_interval_hours")
    )
    collection_schedule: str = Field("0 */6 * * *", validation_alias=_env("COLLECTION_SCHEDULE", "collection_schedule"))
    cleanup_schedule: str = Field("0 2 * * *", validation_alias=_env("CLEANUP_SCHEDULE", "cleanup_schedule"))
    max_data_age_days: int = Field(14, ge=1, le=3660, validation_alias=_env("MAX_DATA_AGE_DAYS", "max_data_age_days"))

    @field_validator("collection_schedule", "cleanup_schedule")
    @classmethod
    def _cron(cls, v: str) -> str:
        return check_cron(v)


class ForcingSourcesSettings(Section):
    """GFS mirrors and patterns, the Copernicus Marine dataset, bounding box, depth and concurrency."""

    section: ClassVar[str] = "forcing_sources"

    gfs_mirrors: Names = Field(
        list(MIRRORS), validation_alias=_env("FORCING_GFS_MIRRORS", "gfs_mirrors"),
        description="GFS mirrors tried in this order (names of earthkeep.sources.gfs.MIRRORS)",
    )
    gfs_aws_url: str = Field(
        MIRRORS["aws"].base_url, validation_alias=_env("FORCING_GFS_AWS_URL", "gfs_aws_url"),
        description="base URL of the NOAA open-data bucket on AWS",
    )
    gfs_nomads_url: str = Field(
        MIRRORS["nomads"].base_url,
        validation_alias=_env("FORCING_GFS_NOMADS_URL", "gfs_nomads_url"),
        description="base URL of NOMADS (keeps about 10 days)",
    )
    gfs_google_url: str = Field(
        MIRRORS["google"].base_url,
        validation_alias=_env("FORCING_GFS_GOOGLE_URL", "gfs_google_url"),
        description="base URL of the Google Cloud copy",
    )
    gfs_grid: str = Field("0p25", validation_alias=_env("FORCING_GFS_GRID", "gfs_grid"),
                          description="GFS grid: 0p25 (default), 0p50 or 1p00")
    gfs_patterns: Names = Field(
        [":UGRD:10 m above ground:", ":VGRD:10 m above ground:"],
        validation_alias=_env("FORCING_GFS_PATTERNS", "gfs_patterns"),
        description="regular expressions matched against ':VARIABLE:level:forecast:' of .idx lines",
    )
    gfs_concurrency: int = Field(8, ge=1, le=64, validation_alias=_env("FORCING_GFS_CONCURRENCY", "gfs_concurrency"),
                                 description="GFS files downloaded at once")
    gfs_lookback_cycles: int = Field(
        8, ge=1, le=120, validation_alias=_env("FORCING_GFS_LOOKBACK_CYCLES", "gfs_lookback_cycles"),
        description="how many 6-hourly cycles back to look for the latest complete one",
    )
    analysis_hours: Annotated[list[int], NoDecode] = Field(
        [0, 3], validation_alias=_env("FORCING_ANALYSIS_HOURS", "analysis_hours"),
        description="forecast hours of each cycle that make up the 3-hourly analysis series",
    )
    claim_ttl_s: float = Field(900.0, gt=0, validation_alias=_env("FORCING_CLAIM_TTL", "claim_ttl_s"),
                               description="seconds a collector holds a file before another may take it over")
    bbox: Annotated[list[float] | None, NoDecode] = Field(
        None, validation_alias=_env("FORCING_BBOX", "bbox"),
        description="west,south,east,north of the currents subset (required for Copernicus Marine)",
    )
    cmems_dataset_id: str = Field(
        "cmems_mod_glo_phy-cur_anfc_0.083deg_PT6H-i",
        validation_alias=_env("FORCING_CMEMS_DATASET", "cmems_dataset_id"),
        description="Copernicus Marine dataset holding uo/vo",
    )
    cmems_variables: Names = Field(["uo", "vo"], validation_alias=_env("FORCING_CMEMS_VARIABLES", "cmems_variables"))
    cmems_min_depth: float = Field(0.0, ge=0, validation_alias=_env("FORCING_CMEMS_MIN_DEPTH", "cmems_min_depth"))
    cmems_max_depth: float = Field(1.0, ge=0, validation_alias=_env("FORCING_CMEMS_MAX_DEPTH", "cmems_max_depth"),
                                   description="metres; 1.0 keeps the surface layer (0.49 m) only")
    cmems_forecast_days: int = Field(5, ge=0, le=10,
                                     validation_alias=_env("FORCING_CMEMS_FORECAST_DAYS", "cmems_forecast_days"))
    cmems_chunk_days: int = Field(1, ge=1, le=31, validation_alias=_env("FORCING_CMEMS_CHUNK_DAYS", "cmems_chunk_days"),
                                  description="days requested per Copernicus Marine subset call")
    cmems_retries: int = Field(4, ge=0, le=20, validation_alias=_env("FORCING_CMEMS_RETRIES", "cmems_retries"))
    cmems_backoff_s: float = Field(5.0, ge=0, validation_alias=_env("FORCING_CMEMS_BACKOFF", "cmems_backoff_s"))
    collect_on_start: bool | None = Field(
        None, validation_alias=_env("FORCING_COLLECT_ON_START", "collect_on_start"),
        description="collect history and the latest forecast when the service starts; unset: only when a "
                    "forcing setting (FORCING_*, COPERNICUS_*, HISTORICAL_DAYS, ...) is configured",
    )

    @field_validator("gfs_mirrors", "gfs_patterns", "analysis_hours", "bbox", "cmems_variables", mode="before")
    @classmethod
    def _lists(cls, v: Any) -> Any:
        return _split(v)

    @field_validator("gfs_mirrors")
    @classmethod
    def _known_mirrors(cls, v: list[str]) -> list[str]:
        bad = [m for m in v if m not in MIRRORS]
        if bad or not v:
            raise ValueError(f"unknown GFS mirrors {bad}; valid: {', '.join(MIRRORS)}")
        return v

    @field_validator("bbox")
    @classmethod
    def _bbox(cls, v: list[float] | None) -> list[float] | None:
        if v is None:
            return None

        try:
            return list(check_bbox(v))
        except InvalidInput as exc:
            raise ValueError(str(exc)) from exc

    @field_validator("analysis_hours")
    @classmethod
    def _hours(cls, v: list[int]) -> list[int]:
        if not v or any(h < 0 or h > 384 for h in v):
            raise ValueError("analysis hours must be forecast hours in 0..384")
        return sorted(set(v))

    def mirror_urls(self) -> dict[str, str]:
        """Base URL of each configured mirror, in priority order."""
        urls = {"aws": self.gfs_aws_url, "nomads": self.gfs_nomads_url, "google": self.gfs_google_url}
        return {name: urls[name].rstrip("/") for name in self.gfs_mirrors}


@dataclass(frozen=True)
class ForcingConfig:
    """Both sections the forcing domain reads: the seed's names and the sources'."""

    seed: ForcingSettings
    sources: ForcingSourcesSettings

    @property
    def collect_on_start(self) -> bool:
        """The seed's start-up collection, unless nothing about forcing was configured.

        A fresh ``make run`` with no forcing settings would otherwise queue downloads from
        NOAA at once (and fail offline); the schedules run either way.
        """
        if self.sources.collect_on_start is not None:
            return self.sources.collect_on_start
        return bool(self.seed.model_fields_set or self.sources.model_fields_set)

    @property
    def forecast_hours(self) -> list[int]:
        """0..FORECAST_HOURS every FORECAST_INTERVAL_HOURS (41 hours by default)."""
        return list(range(0, self.seed.forecast_hours + 1, self.seed.forecast_interval_hours))


def forcing_config(settings: Settings) -> ForcingConfig:
    """The forcing configuration of ``settings`` (sections ``[forcing]`` and ``[forcing_sources]``)."""
    return ForcingConfig(settings.of(ForcingSettings), settings.of(ForcingSourcesSettings))
