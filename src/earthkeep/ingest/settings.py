"""Settings of station-observation ingest (``[ingest]`` in earthkeep.toml)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AliasChoices, Field, field_validator

from earthkeep.config import Section, check_cron


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class IngestSettings(Section):
    """Collector, broker, consumer, queries and retention of station observations."""

    section: ClassVar[str] = "ingest"

    broker: Literal["embedded", "nats"] = Field(
        "embedded", validation_alias=_env("EARTHKEEP_INGEST_BROKER", "broker"),
        description="embedded: the collector writes through to the database; nats: NATS JetStream",
    )
    nats_url: str = Field("nats://127.0.0.1:4222", validation_alias=_env("NATS_URL", "nats_url"))
    stream: str = Field("OBSERVATIONS", pattern=r"^[A-Za-z0-9_-]{1,64}$",
                        validation_alias=_env("EARTHKEEP_INGEST_STREAM", "stream"))
    subject_prefix: str = Field("earthkeep.obs", pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$",
                                validation_alias=_env("EARTHKEEP_INGEST_SUBJECT", "subject_prefix"))
    durable: str = Field("earthkeep-ingest", pattern=r"^[A-Za-z0-9_-]{1,64}$",
                         validation_alias=_env("EARTHKEEP_INGEST_DURABLE", "durable"))
    message_mode: Literal["record", "batch"] = Field(
        "batch", validation_alias=_env("EARTHKEEP_INGEST_MESSAGE_MODE", "message_mode"),
        description="batch: one message per chunk of a request (Nats-Msg-Id = its SHA-256); "
                    "record: one JetStream message per observation (Nats-Msg-Id = station|timestamp), "
                    "about 3x the CPU per observation",
    )
    batch_message_records: int = Field(1000, ge=1, le=5000,
                                       validation_alias=_env("EARTHKEEP_INGEST_BATCH_MESSAGE_RECORDS",
                                                             "batch_message_records"))
    duplicate_window_s: float = Field(
        600.0, gt=0, validation_alias=_env("EARTHKEEP_INGEST_DUPLICATE_WINDOW", "duplicate_window_s"),
        description="JetStream Nats-Msg-Id dedupe window",
    )
    stream_max_bytes: int = Field(
        1 << 30, ge=1 << 20, validation_alias=_env("EARTHKEEP_INGEST_STREAM_MAX_BYTES", "stream_max_bytes"),
        description="stream size limit; when full, new publishes are refused (collector answers 503)",
    )
    publish_timeout_s: float = Field(10.0, gt=0, validation_alias=_env("EARTHKEEP_INGEST_PUBLISH_TIMEOUT",
                                                                        "publish_timeout_s"))
    max_batch: int = Field(10_000, ge=1, le=1_000_000,
                           validation_alias=_env("EARTHKEEP_INGEST_MAX_BATCH", "max_batch"),
                           description="most records accepted in one POST /observations")
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024,
                                validation_alias=_env("EARTHKEEP_INGEST_MAX_BODY_BYTES", "max_body_bytes"))
    rate_limit: float = Field(
        200_000.0, ge=0, validation_alias=_env("EARTHKEEP_INGEST_RATE_LIMIT", "rate_limit"),
        description="observations per second per API key (0 disables the limit)",
    )
    rate_burst: int = Field(400_000, ge=1, validation_alias=_env("EARTHKEEP_INGEST_RATE_BURST", "rate_burst"))
    future_tolerance_s: float = Field(300.0, ge=0, validation_alias=_env("EARTHKEEP_INGEST_FUTURE_TOLERANCE",
                                                                          "future_tolerance_s"))
    api_consumers: int = Field(
        1, ge=0, le=64, validation_alias=_env("EARTHKEEP_INGEST_API_CONSUMERS", "api_consumers"),
        description="consumers the API process runs itself in nats mode (0: run `earthkeep weather consume`)",
    )
    fetch_batch: int = Field(3000, ge=1, le=100_000,
                             validation_alias=_env("EARTHKEEP_INGEST_FETCH_BATCH", "fetch_batch"))
    fetch_wait_s: float = Field(1.0, gt=0, validation_alias=_env("EARTHKEEP_INGEST_FETCH_WAIT", "fetch_wait_s"))
    fetch_linger_s: float = Field(
        0.02, ge=0, validation_alias=_env("EARTHKEEP_INGEST_FETCH_LINGER", "fetch_linger_s"),
        description="when a consumer has caught up, how long it collects after the first new message before writing",
    )
    ack_wait_s: float = Field(30.0, gt=0, validation_alias=_env("EARTHKEEP_INGEST_ACK_WAIT", "ack_wait_s"))
    max_ack_pending: int = Field(20_000, ge=1, validation_alias=_env("EARTHKEEP_INGEST_MAX_ACK_PENDING",
                                                                      "max_ack_pending"))
    max_deliver: int = Field(-1, validation_alias=_env("EARTHKEEP_INGEST_MAX_DELIVER", "max_deliver"),
                             description="-1: redeliver until the database takes the batch")
    retry_max_s: float = Field(10.0, gt=0, validation_alias=_env("EARTHKEEP_INGEST_RETRY_MAX", "retry_max_s"))
    dedupe_size: int = Field(500_000, ge=0, validation_alias=_env("EARTHKEEP_INGEST_DEDUPE_SIZE", "dedupe_size"))
    dedupe_age_s: float = Field(3600.0, gt=0, validation_alias=_env("EARTHKEEP_INGEST_DEDUPE_AGE", "dedupe_age_s"))
    raw_retention_days: int | None = Field(
        365, ge=1, validation_alias=_env("EARTHKEEP_INGEST_RAW_RETENTION_DAYS", "raw_retention_days"),
        description="raw observations older than this are deleted (empty: keep forever)",
    )
    rollup_retention_days: int | None = Field(
        None, ge=1, validation_alias=_env("EARTHKEEP_INGEST_ROLLUP_RETENTION_DAYS", "rollup_retention_days"),
        description="hourly rollups older than this are deleted (empty: keep forever)",
    )
    retention_schedule: str = Field("30 3 * * *",
                                    validation_alias=_env("EARTHKEEP_INGEST_RETENTION_SCHEDULE",
                                                          "retention_schedule"))
    query_timeout_ms: int = Field(5000, ge=10, validation_alias=_env("EARTHKEEP_INGEST_QUERY_TIMEOUT_MS",
                                                                      "query_timeout_ms"))
    query_max_rows: int = Field(10_000, ge=1, validation_alias=_env("EARTHKEEP_INGEST_QUERY_MAX_ROWS",
                                                                     "query_max_rows"))
    max_buckets: int = Field(50_000, ge=1, validation_alias=_env("EARTHKEEP_INGEST_MAX_BUCKETS", "max_buckets"))
    redis_url: str | None = Field(None, validation_alias=_env("REDIS_URL", "redis_url"),
                                  description="query cache; without it queries are not cached")
    cache_ttl_s: int = Field(300, ge=1, validation_alias=_env("EARTHKEEP_INGEST_CACHE_TTL", "cache_ttl_s"))
    stats_every_s: float = Field(2.0, gt=0, validation_alias=_env("EARTHKEEP_INGEST_STATS_EVERY", "stats_every_s"))

    @property
    def fetch_messages(self) -> int:
        """Messages per pull: ``fetch_batch`` records' worth in either message mode."""
        if self.message_mode == "record":
            return self.fetch_batch
        return max(1, self.fetch_batch // self.batch_message_records)

    @field_validator("redis_url", "raw_retention_days", "rollup_retention_days", mode="before")
    @classmethod
    def _empty_is_none(cls, v: object) -> object:
        return None if v == "" else v

    @field_validator("retention_schedule")
    @classmethod
    def _cron(cls, v: str) -> str:
        return check_cron(v)
