"""Settings of data rescue (``[rescue]`` in earthkeep.toml, ``EARTHKEEP_RESCUE_*`` in the environment)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import NoDecode

from earthkeep.config import Section, check_cron

if TYPE_CHECKING:
    from earthkeep.runtime import Services

DATA_GOV = "https://catalog.data.gov"
Names = Annotated[list[str], NoDecode]


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


def _list(v: Any) -> Any:
    """Accept ``a,b,c`` as well as a JSON/TOML list."""
    if isinstance(v, str):
        text = v.strip()
        if text.startswith("["):
            return json.loads(text)
        return [p.strip() for p in text.split(",") if p.strip()]
    return v


class RescueSettings(Section):
    """CKAN discovery, priorities, allocation to rescue nodes and verification of their copies."""

    section: ClassVar[str] = "rescue"

    portal: str = Field(DATA_GOV, validation_alias=_env("EARTHKEEP_RESCUE_PORTAL", "CKAN_URL", "portal"),
                        description="base URL of the CKAN portal to rescue from")
    organizations: Names = Field(default_factory=list,
                                     validation_alias=_env("EARTHKEEP_RESCUE_ORGS", "organizations"),
                                     description="only datasets of these organizations (names), comma-separated")
    groups: Names = Field(default_factory=list, validation_alias=_env("EARTHKEEP_RESCUE_GROUPS", "groups"),
                              description="only datasets in these groups (e.g. climate5434)")
    tags: Names = Field(default_factory=list, validation_alias=_env("EARTHKEEP_RESCUE_TAGS", "tags"),
                            description="only datasets with one of these tags (e.g. climate)")
    query: str = Field("*:*", validation_alias=_env("EARTHKEEP_RESCUE_QUERY", "query"),
                       description="Solr q of package_search")
    rows: int = Field(1000, ge=1, le=1000, validation_alias=_env("EARTHKEEP_RESCUE_ROWS", "rows"),
                      description="datasets per package_search page (CKAN caps it at 1000)")
    concurrency: int = Field(8, ge=1, le=64, validation_alias=_env("EARTHKEEP_RESCUE_CONCURRENCY", "concurrency"),
                             description="package_search requests in flight (time windows paged in parallel)")
    writers: int = Field(3, ge=1, le=16, validation_alias=_env("EARTHKEEP_RESCUE_WRITERS", "writers"),
                         description="connections keeping listed pages at once on PostgreSQL (SQLite: always one)")
    timeout_s: float = Field(120.0, gt=0, validation_alias=_env("EARTHKEEP_RESCUE_TIMEOUT", "timeout_s"))
    overlap_s: float = Field(300.0, ge=0, validation_alias=_env("EARTHKEEP_RESCUE_OVERLAP", "overlap_s"),
                             description="incremental runs re-read this much before the last high-water mark")
    max_gone_fraction: float = Field(
        0.5, ge=0, le=1, validation_alias=_env("EARTHKEEP_RESCUE_MAX_GONE_FRACTION", "max_gone_fraction"),
        description="a sweep that would mark more than this share of datasets gone is refused (portal outage?)")
    discover_schedule: str = Field("0 */6 * * *", validation_alias=_env("EARTHKEEP_RESCUE_SCHEDULE",
                                                                        "discover_schedule"))
    sweep_schedule: str = Field("30 4 * * *", validation_alias=_env("EARTHKEEP_RESCUE_SWEEP_SCHEDULE",
                                                                    "sweep_schedule"),
                                description="full id sweep that marks vanished datasets gone")
    rank_schedule: str = Field("17 * * * *", validation_alias=_env("EARTHKEEP_RESCUE_RANK_SCHEDULE",
                                                                   "rank_schedule"))
    reap_schedule: str = Field("* * * * *", validation_alias=_env("EARTHKEEP_RESCUE_REAP_SCHEDULE", "reap_schedule"),
                               description="expired leases go back to the pool")
    probe_batch: int = Field(2000, ge=1, validation_alias=_env("EARTHKEEP_RESCUE_PROBE_BATCH", "probe_batch"),
                             description="assets probed (HEAD, landing pages scraped) per probe job")
    probe_concurrency: int = Field(8, ge=1, le=128, validation_alias=_env("EARTHKEEP_RESCUE_PROBE_CONCURRENCY",
                                                                          "probe_concurrency"))
    scrape_depth: int = Field(1, ge=0, le=3, validation_alias=_env("EARTHKEEP_RESCUE_SCRAPE_DEPTH", "scrape_depth"),
                              description="same-host HTML pages followed below a landing page")
    scrape_max_pages: int = Field(10, ge=1, le=200, validation_alias=_env("EARTHKEEP_RESCUE_SCRAPE_PAGES",
                                                                          "scrape_max_pages"))
    scrape_max_bytes: int = Field(2 << 20, ge=1024, validation_alias=_env("EARTHKEEP_RESCUE_SCRAPE_BYTES",
                                                                          "scrape_max_bytes"))
    replication: int = Field(2, ge=1, le=20, validation_alias=_env("EARTHKEEP_RESCUE_REPLICATION", "replication"),
                             description="target copies of each asset (in flight + held)")
    lease_s: float = Field(900.0, ge=5, validation_alias=_env("EARTHKEEP_RESCUE_LEASE_SECONDS", "lease_s"),
                           description="an allocation without a heartbeat for this long goes back to the pool")
    max_allocate: int = Field(50, ge=1, le=1000, validation_alias=_env("EARTHKEEP_RESCUE_MAX_ALLOCATE",
                                                                       "max_allocate"))
    max_asset_bytes: int = Field(
        16 << 40, ge=1, validation_alias=_env("EARTHKEEP_RESCUE_MAX_ASSET_BYTES", "max_asset_bytes"),
        description="declared sizes above this are treated as unknown (recorded as implausible)")
    unknown_size_bytes: int = Field(
        1 << 30, ge=0, validation_alias=_env("EARTHKEEP_RESCUE_UNKNOWN_SIZE", "unknown_size_bytes"),
        description="space reserved on a node for an asset of unknown size")
    watch_orgs: Names = Field(default_factory=list, validation_alias=_env("EARTHKEEP_RESCUE_WATCH_ORGS",
                                                                              "watch_orgs"),
                                  description="organizations whose datasets are considered at risk")
    weight_gone: float = Field(100.0, validation_alias=_env("EARTHKEEP_RESCUE_WEIGHT_GONE", "weight_gone"))
    weight_failing: float = Field(40.0, validation_alias=_env("EARTHKEEP_RESCUE_WEIGHT_FAILING", "weight_failing"))
    weight_watch: float = Field(30.0, validation_alias=_env("EARTHKEEP_RESCUE_WEIGHT_WATCH", "weight_watch"))
    weight_age: float = Field(20.0, validation_alias=_env("EARTHKEEP_RESCUE_WEIGHT_AGE", "weight_age"))
    age_full_days: float = Field(3650.0, gt=0, validation_alias=_env("EARTHKEEP_RESCUE_AGE_FULL_DAYS",
                                                                      "age_full_days"),
                                 description="age since last modification that earns the full age weight")
    weight_popularity: float = Field(10.0, validation_alias=_env("EARTHKEEP_RESCUE_WEIGHT_POPULARITY",
                                                                 "weight_popularity"))
    weight_copies: float = Field(50.0, validation_alias=_env("EARTHKEEP_RESCUE_WEIGHT_COPIES", "weight_copies"),
                                 description="earned in full by an asset with no verified copy")
    weight_size: float = Field(10.0, validation_alias=_env("EARTHKEEP_RESCUE_WEIGHT_SIZE", "weight_size"),
                               description="penalty in full for a 1 TB asset (log scale from 1 kB)")

    @field_validator("organizations", "groups", "tags", "watch_orgs", mode="before")
    @classmethod
    def _lists(cls, v: Any) -> Any:
        return _list(v)

    @field_validator("portal")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return v.rstrip("/")

    @field_validator("discover_schedule", "sweep_schedule", "rank_schedule", "reap_schedule")
    @classmethod
    def _cron(cls, v: str) -> str:
        return check_cron(v)


def rescue_settings(services: Services) -> RescueSettings:
    """The ``[rescue]`` section of ``services`` (``services.use_settings`` replaces it)."""
    return services.settings.of(RescueSettings)
