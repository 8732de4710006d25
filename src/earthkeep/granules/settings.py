"""Settings of the granules domain: sections ``[granules]``, ``[mail]`` and ``[viirs]``.

The VIIRS collector's environment names (``VIIRS_RETENTION``,
``NUM_GINA_CONNECTIONS``, ``GINA_BACKFILL_DAYS``, ``VIIRS_FACILITY``) are
:class:`GranuleSettings`, its mail ones (``MAILHOST``, ``LOG_SENDER``,
``LOG_RECIPIENT``) :class:`MailSettings`; :class:`ViirsSettings` holds
earthkeep's additions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AliasChoices, BaseModel, Field, field_validator, model_validator
from pydantic_settings import NoDecode

from earthkeep.config import Section, check_cron
from earthkeep.sources.gina import GINA, PLATFORMS, SEGMENT_GROUPS


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class MailSettings(Section):
    """Error e-mails (the VIIRS collector's names)."""

    section: ClassVar[str] = "mail"
    mailhost: str | None = Field(None, validation_alias=_env("MAILHOST", "mailhost"))
    sender: str | None = Field(None, validation_alias=_env("LOG_SENDER", "sender"))
    recipient: str | None = Field(None, validation_alias=_env("LOG_RECIPIENT", "recipient"))


class GranuleSettings(Section):
    """Satellite granule mirroring (the VIIRS collector's names)."""

    section: ClassVar[str] = "granules"
    retention_days: int | None = Field(None, ge=1, validation_alias=_env("VIIRS_RETENTION", "retention_days"))
    connections: int = Field(4, ge=1, le=32, validation_alias=_env("NUM_GINA_CONNECTIONS", "connections"))
    backfill_days: int = Field(2, ge=0, le=60, validation_alias=_env("GINA_BACKFILL_DAYS", "backfill_days"))
    facility: Literal["gilmore", "uafgina"] = Field("gilmore", validation_alias=_env("VIIRS_FACILITY", "facility"))

    @field_validator("facility", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v


class Product(BaseModel):
    """One product of the segment gatherer (one ``segment_gatherer.ini`` section of the original)."""

    name: str = Field(pattern=r"^[a-z0-9_-]{1,40}$")
    required: list[str] = Field(min_length=1, description="segments without which nothing is published")
    wanted: list[str] = Field(default_factory=list, description="published at once when all are there")
    time_tolerance_s: float = Field(10.0, ge=0)
    timeliness_s: float = Field(600.0, gt=0)
    subject: str | None = None

    @model_validator(mode="after")
    def _wanted_covers_required(self) -> Product:
        self.wanted = sorted(set(self.wanted) | set(self.required))
        return self

    def topic(self, prefix: str) -> str:
        return self.subject or f"{prefix}/granule/{self.name}"


DEFAULT_PRODUCTS: list[dict[str, Any]] = [
    {"name": "tir", "required": ["GITCO", "SVI05"]},
    {"name": "vis", "required": ["GMTCO", "GITCO", "SVM03", "SVM04", "SVM05", "SVI01"]},
    {"name": "btd", "required": ["GMTCO", "SVM15", "SVM16"]},
    {"name": "mir", "required": ["GITCO", "SVI04"]},
]


class ViirsSettings(Section):
    """Granule mirror, publisher, segment gatherer and task broker."""

    section: ClassVar[str] = "viirs"
    gina_url: str = Field(GINA.base_url, validation_alias=_env("EARTHKEEP_GINA_URL", "gina_url"),
                          description="base URL of the GINA NRT products search")
    platforms: Annotated[list[str], NoDecode] = Field(
        ["snpp", "noaa20"], validation_alias=_env("EARTHKEEP_VIIRS_PLATFORMS", "platforms"))
    segments: Annotated[list[str], NoDecode] = Field(
        [s for group in SEGMENT_GROUPS.values() for s in group],
        validation_alias=_env("EARTHKEEP_VIIRS_SEGMENTS", "segments"),
        description="SDR segments (bands and geolocation) to mirror",
    )
    file_concurrency: int = Field(2, ge=1, le=32, validation_alias=_env("EARTHKEEP_GINA_FILES", "file_concurrency"),
                                  description="files fetched at once (each with NUM_GINA_CONNECTIONS segments)")
    mirror_schedule: str = Field("*/5 * * * *", validation_alias=_env("EARTHKEEP_GINA_SCHEDULE", "mirror_schedule"))
    lock_ttl_s: float = Field(120.0, gt=0, validation_alias=_env("EARTHKEEP_GINA_LOCK_TTL", "lock_ttl_s"))
    retry_base_s: float = Field(300.0, ge=0, validation_alias=_env("EARTHKEEP_GINA_RETRY_SECONDS", "retry_base_s"),
                                description="first wait before a bad file is tried again (doubles each time)")
    publish_address: str = Field(
        "tcp://127.0.0.1:29092", validation_alias=_env("EARTHKEEP_POSTTROLL_ADDRESS", "publish_address"),
        description="ZMQ PUB address of the posttroll publisher; tcp://*:29092 serves other hosts",
    )
    subject: str = Field("/AVO/viirs/sdr", validation_alias=_env("EARTHKEEP_VIIRS_SUBJECT", "subject"),
                         description="posttroll subject of file messages (subscribe to pytroll://AVO/viirs/sdr)")
    topic_prefix: str = Field("/AVO/viirs", validation_alias=_env("EARTHKEEP_VIIRS_TOPIC_PREFIX", "topic_prefix"),
                              description="prefix of dataset and status subjects")
    nats_url: str | None = Field(None, validation_alias=_env("NATS_URL", "nats_url"))
    nats_subject: str = Field("earthkeep.granules", pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$",
                              validation_alias=_env("EARTHKEEP_GRANULES_NATS_SUBJECT", "nats_subject"))
    uri_base: str | None = Field(None, validation_alias=_env("EARTHKEEP_VIIRS_URI_BASE", "uri_base"),
                                 description="uri of a file = uri_base/<name> (default: its path or URL in the store)")
    watch_dir: Path | None = Field(None, validation_alias=_env("EARTHKEEP_VIIRS_WATCH_DIR", "watch_dir"))
    products: Annotated[list[Product], NoDecode] = Field(
        default_factory=lambda: [Product(**p) for p in DEFAULT_PRODUCTS],
        validation_alias=_env("EARTHKEEP_VIIRS_PRODUCTS", "products"),
        description="segment gatherer products as JSON (name, required, wanted, time_tolerance_s, timeliness_s)")
    orbit_slack: int = Field(1, ge=0, le=10, validation_alias=_env("EARTHKEEP_TASK_ORBIT_SLACK", "orbit_slack"))
    task_lease_s: float = Field(3600.0, gt=0, validation_alias=_env("EARTHKEEP_TASK_LEASE", "task_lease_s"))
    status_interval_s: float = Field(60.0, gt=0, validation_alias=_env("EARTHKEEP_TASK_STATUS_INTERVAL",
                                                                        "status_interval_s"))
    tle_url: str = Field("https://celestrak.org/NORAD/elements/weather.txt",
                         validation_alias=_env("EARTHKEEP_TLE_URL", "tle_url"))
    tle_schedule: str = Field("17 */6 * * *", validation_alias=_env("EARTHKEEP_TLE_SCHEDULE", "tle_schedule"))
    elements_reload_s: float = Field(
        1800.0, gt=0, le=86400, validation_alias=_env("EARTHKEEP_TLE_RELOAD_SECONDS", "elements_reload_s"),
        description="how often the granules role re-reads the stored elements (refreshed by the elements job)")
    retention_schedule: str = Field("30 3 * * *", validation_alias=_env("EARTHKEEP_VIIRS_RETENTION_SCHEDULE",
                                                                         "retention_schedule"))
    mail_interval_s: float = Field(900.0, gt=0, validation_alias=_env("EARTHKEEP_MAIL_INTERVAL", "mail_interval_s"),
                                   description="at most one error e-mail per interval (errors are grouped)")
    mail_port: int = Field(25, ge=1, le=65535, validation_alias=_env("EARTHKEEP_MAIL_PORT", "mail_port"))

    @field_validator("platforms", "segments", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = json.loads(v) if v.strip().startswith("[") else [p.strip() for p in v.split(",") if p.strip()]
        return v

    @field_validator("platforms")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = [p for p in v if p not in PLATFORMS]
        if unknown:
            raise ValueError(f"unknown platforms {unknown}; known: {', '.join(PLATFORMS)}")
        return v

    @field_validator("products", mode="before")
    @classmethod
    def _json(cls, v: Any) -> Any:
        return json.loads(v) if isinstance(v, str) else v

    @field_validator("mirror_schedule", "tle_schedule", "retention_schedule")
    @classmethod
    def _cron(cls, v: str) -> str:
        return check_cron(v)

    def product(self, name: str) -> Product:
        for p in self.products:
            if p.name == name:
                return p
        raise KeyError(name)
