"""Settings: one class per adapter, the seed environment names accepted unchanged.

Values come from, in order of precedence: environment variables, then the
section of ``earthkeep.toml`` named after the class's ``section`` (the file is
``$EARTHKEEP_CONFIG`` or ``./earthkeep.toml`` when it exists), then defaults.
Environment names are the ones the original services used (``DATABASE_URL``,
``S3_ENDPOINT``, ``HISTORICAL_DAYS``, ``VIIRS_RETENTION`` ...); earthkeep's own
additions start with ``EARTHKEEP_``. In the TOML file a setting is written by
its field name (``[catalog] database_url = "..."``) or its environment name.

Nothing is read at import: call :func:`load_settings` and pass the result down.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from earthkeep.errors import ConfigError, InvalidInput
from earthkeep.scheduler import parse_cron


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class _TomlSection(PydanticBaseSettingsSource):
    """Reads one ``[section]`` of the earthkeep TOML file."""

    def __init__(self, settings_cls: type[BaseSettings], data: Mapping[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = {str(k).lower(): v for k, v in data.items()}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        names = [field_name]
        if isinstance(field.validation_alias, AliasChoices):
            names += [str(c).lower() for c in field.validation_alias.choices]
        for name in names:
            if name in self._data:
                return self._data[name], field_name, False
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                out[key] = value
        return out


def check_cron(v: str) -> str:
    """Validator for cron settings: the expression, or ``ValueError`` saying what is wrong."""
    try:
        parse_cron(v)
    except InvalidInput as exc:
        raise ValueError(str(exc)) from exc
    return v


class Section(BaseSettings):
    """Base of every settings class: env names, then TOML section, then defaults."""

    section: ClassVar[str] = ""
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, case_sensitive=False)
    _toml: ClassVar[Mapping[str, Any]] = {}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = _TomlSection(settings_cls, cls._toml.get(cls.section, {}))
        return (init_settings, env_settings, toml)


class CatalogSettings(Section):
    """The catalog database (items, runs, jobs and domain tables)."""

    section: ClassVar[str] = "catalog"
    database_url: str = Field(
        "sqlite:///./data/earthkeep.db",
        validation_alias=_env("DATABASE_URL", "EARTHKEEP_DATABASE_URL", "database_url"),
        description="SQLAlchemy URL: sqlite:///path or postgresql://user:pass@host:port/db",
    )
    pool_size: int = Field(10, ge=1, le=200, validation_alias=_env("EARTHKEEP_DB_POOL_SIZE", "pool_size"))

    @field_validator("database_url")
    @classmethod
    def _known_dialect(cls, v: str) -> str:
        scheme = v.split(":", 1)[0]
        if not (scheme.startswith("sqlite") or scheme.startswith("postgres")):
            raise ValueError("expected a sqlite:/// or postgresql:// URL")
        return v


class StoreSettings(Section):
    """The object store: a local directory by default, S3 when S3_ENDPOINT is set."""

    section: ClassVar[str] = "store"
    local_dir: Path = Field(Path("./data/store"), validation_alias=_env("EARTHKEEP_STORE_DIR", "local_dir"))
    s3_endpoint: str | None = Field(None, validation_alias=_env("S3_ENDPOINT", "s3_endpoint"))
    s3_access_key: SecretStr | None = Field(None, validation_alias=_env("S3_ACCESS_KEY", "s3_access_key"))
    s3_secret_key: SecretStr | None = Field(None, validation_alias=_env("S3_SECRET_KEY", "s3_secret_key"))
    s3_bucket: str = Field("environmental-data", validation_alias=_env("S3_BUCKET", "s3_bucket"))
    s3_region: str = Field("us-east-1", validation_alias=_env("S3_REGION", "s3_region"))
    timeout_s: float = Field(30.0, gt=0, validation_alias=_env("EARTHKEEP_STORE_TIMEOUT", "timeout_s"))

    @field_validator("s3_endpoint")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        if not v.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return v.rstrip("/")


class ApiSettings(Section):
    """The HTTP API."""

    section: ClassVar[str] = "api"
    host: str = Field("127.0.0.1", validation_alias=_env("EARTHKEEP_API_HOST", "host"))
    port: int = Field(8000, ge=0, le=65535, validation_alias=_env("EARTHKEEP_API_PORT", "port"))
    max_body_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, validation_alias=_env("EARTHKEEP_MAX_BODY_BYTES", "max_body_bytes")
    )
    public_read: bool = Field(True, validation_alias=_env("EARTHKEEP_PUBLIC_READ", "public_read"))
    page_limit: int = Field(1000, ge=1, le=100_000, validation_alias=_env("EARTHKEEP_PAGE_LIMIT", "page_limit"))
    key_cache_s: float = Field(
        2.0, ge=0, le=300, validation_alias=_env("EARTHKEEP_API_KEY_CACHE_SECONDS", "key_cache_s"),
        description="how long a verified API key is trusted without asking the catalog again (0: every request); "
                    "a revocation by another process takes effect within this time",
    )
    cors_origins: str = Field(
        "", max_length=4000, validation_alias=_env("EARTHKEEP_CORS_ORIGINS", "cors_origins"),
        description="origins allowed to call the API from a browser on another site (comma list, e.g. "
                    "https://radiantearth.github.io for STAC Browser; * for any); empty: no CORS headers",
    )

    def cors_origin_list(self) -> list[str]:
        """``cors_origins`` split on commas, blanks dropped."""
        return [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]


class WorkerSettings(Section):
    """Job workers: concurrency, leases, retries."""

    section: ClassVar[str] = "worker"
    concurrency: int = Field(4, ge=1, le=256, validation_alias=_env("EARTHKEEP_WORKERS", "concurrency"))
    lease_s: float = Field(60.0, gt=0, validation_alias=_env("EARTHKEEP_LEASE_SECONDS", "lease_s"))
    poll_s: float = Field(1.0, gt=0, validation_alias=_env("EARTHKEEP_POLL_SECONDS", "poll_s"))
    max_attempts: int = Field(5, ge=1, le=100, validation_alias=_env("EARTHKEEP_MAX_ATTEMPTS", "max_attempts"))
    backoff_base_s: float = Field(5.0, ge=0, validation_alias=_env("EARTHKEEP_BACKOFF_SECONDS", "backoff_base_s"))


class TransferSettings(Section):
    """The download engine shared by every source."""

    section: ClassVar[str] = "transfer"
    segments: int = Field(4, ge=1, le=64, validation_alias=_env("EARTHKEEP_SEGMENTS", "segments"))
    per_host: int = Field(8, ge=1, le=256, validation_alias=_env("EARTHKEEP_PER_HOST", "per_host"))
    retries: int = Field(5, ge=0, le=50, validation_alias=_env("EARTHKEEP_RETRIES", "retries"))
    timeout_s: float = Field(60.0, gt=0, validation_alias=_env("EARTHKEEP_HTTP_TIMEOUT", "timeout_s"))
    work_dir: Path = Field(Path("./data/partial"), validation_alias=_env("EARTHKEEP_PARTIAL_DIR", "work_dir"))
    allow_private: bool = Field(
        False, validation_alias=_env("EARTHKEEP_ALLOW_PRIVATE_URLS", "allow_private"),
        description="allow user-supplied URLs that point at loopback or private ranges",
    )


class LogSettings(Section):
    """Structured logs."""

    section: ClassVar[str] = "log"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", validation_alias=_env("LOG_LEVEL", "level")
    )
    format: Literal["auto", "json", "console"] = Field(
        "auto", validation_alias=_env("EARTHKEEP_LOG_FORMAT", "format"),
        description="auto: human lines when stderr is a terminal, JSON lines otherwise (services, pipes, files)")
    service: str = Field("earthkeep", validation_alias=_env("EARTHKEEP_SERVICE", "service"))

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v


class BrokerSettings(Section):
    """Message broker and cache (optional: embedded mode needs neither)."""

    section: ClassVar[str] = "broker"
    nats_url: str | None = Field(None, validation_alias=_env("NATS_URL", "nats_url"))
    redis_url: str | None = Field(None, validation_alias=_env("REDIS_URL", "redis_url"))


SECTIONS: tuple[type[Section], ...] = (
    CatalogSettings,
    StoreSettings,
    ApiSettings,
    WorkerSettings,
    TransferSettings,
    LogSettings,
    BrokerSettings,
)


SectionT = TypeVar("SectionT", bound=Section)


class Settings:
    """The effective configuration: one attribute per adapter or domain section.

    The core sections are typed attributes; a domain's sections (declared by its
    :class:`~earthkeep.domain.Domain`) are attributes too (``settings.forcing``),
    typed through :meth:`of` with the section's class.
    """

    catalog: CatalogSettings
    store: StoreSettings
    api: ApiSettings
    worker: WorkerSettings
    transfer: TransferSettings
    log: LogSettings
    broker: BrokerSettings

    def __init__(self, sections: Mapping[str, Section], source: Path | None) -> None:
        self._sections = dict(sections)
        self.source = source
        for name, section in self._sections.items():
            setattr(self, name, section)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._sections[name]
        except KeyError:
            raise AttributeError(f"no settings section {name!r}; known: {', '.join(self._sections)}") from None

    def section(self, name: str) -> Any:
        """A section by name (``KeyError`` when no such section is loaded)."""
        return self._sections[name]

    def of(self, cls: type[SectionT]) -> SectionT:
        """The section of class ``cls``, typed as ``cls`` (:class:`ConfigError` when it is not loaded)."""
        try:
            found = self._sections[cls.section]
        except KeyError:
            raise ConfigError(f"no settings section [{cls.section}] is loaded; known: "
                              f"{', '.join(self._sections)}") from None
        if not isinstance(found, cls):
            raise ConfigError(f"settings section [{cls.section}] is a {type(found).__name__}, not {cls.__name__}")
        return found

    def replaced(self, section: Section) -> Settings:
        """A copy with ``section`` in place of the section of its name."""
        return Settings({**self._sections, section.section: section}, self.source)

    def sections(self) -> dict[str, Section]:
        return dict(self._sections)

    def masked(self) -> dict[str, dict[str, Any]]:
        """Every effective value, secrets and URL passwords replaced by ``****``."""
        out: dict[str, dict[str, Any]] = {}
        for name, section in self._sections.items():
            values: dict[str, Any] = {}
            for field in type(section).model_fields:
                values[field] = _mask(getattr(section, field))
            out[name] = values
        return out


def _mask(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return "****" if value.get_secret_value() else ""
    if isinstance(value, str) and "://" in value:
        return mask_url(value)
    if isinstance(value, Path):
        return str(value)
    return value


def mask_url(url: str) -> str:
    """Replace the password of ``url`` (if any) with ``****``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "") + ":****"
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[-1]}"))


def _read_toml(path: Path | None) -> tuple[dict[str, Any], Path | None]:
    if path is None:
        env_path = os.environ.get("EARTHKEEP_CONFIG")
        if env_path:
            path = Path(env_path)
        elif Path("earthkeep.toml").is_file():
            path = Path("earthkeep.toml")
        else:
            return {}, None
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh), path
    except FileNotFoundError as exc:
        raise ConfigError(f"EARTHKEEP_CONFIG: file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"EARTHKEEP_CONFIG: {path} is not valid TOML: {exc}") from exc


def _describe(cls: type[Section], error: ValidationError) -> str:
    first = error.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else "?"
    info = cls.model_fields.get(field)
    name = field
    if info is not None and isinstance(info.validation_alias, AliasChoices):
        name = str(info.validation_alias.choices[0])
    got = first.get("input")
    msg_txt = str(first["msg"])
    got_txt = "" if isinstance(got, dict) or repr(got) in msg_txt else f", got {got!r}"
    msg = first["msg"].removeprefix("Value error, ")
    return f"{name}: {msg}{got_txt}"


def build_settings(sections: Sequence[type[Section]], config_file: Path | None = None,
                   overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Settings:
    """Build ``sections`` from the environment, the TOML file and ``overrides``, or raise :class:`ConfigError`.

    The process's whole set (core plus every domain) is built by
    :func:`earthkeep.settings.load_settings`; this module knows no domain.
    """
    overrides = overrides or {}
    toml, source = _read_toml(config_file)
    built: dict[str, Section] = {}
    for cls in sections:
        cls._toml = toml
        try:
            built[cls.section] = cls(**dict(overrides.get(cls.section, {})))
        except ValidationError as exc:
            raise ConfigError(_describe(cls, exc)) from exc
    return Settings(built, source)


def reference_markdown(sections: Sequence[type[Section]]) -> str:
    """The configuration reference of ``sections`` (docs/configuration.md: :func:`earthkeep.settings.reference`)."""
    lines = ["# Configuration reference", "",
             "Generated by `earthkeep config reference` from the settings classes; do not edit by hand.", "",
             "Precedence: environment variable, then the section of `earthkeep.toml` (or `$EARTHKEEP_CONFIG`),",
             "then the default. In the TOML file a setting is written by its field name or its environment name.",
             ""]
    for cls in sections:
        lines += [f"## [{cls.section}]", "", (cls.__doc__ or "").strip(), "",
                  "| environment | field | default | description |", "| --- | --- | --- | --- |"]
        for name, field in cls.model_fields.items():
            envs = [str(c) for c in field.validation_alias.choices if str(c) != name] \
                if isinstance(field.validation_alias, AliasChoices) else []
            default = field.default
            shown = "" if default is None else (str(default) if not isinstance(default, SecretStr) else "****")
            ann = getattr(field.annotation, "__name__", str(field.annotation)).replace("typing.", "")
            desc = (field.description or ann).replace(" | ", " or ").replace("pydantic.types.", "")
            lines.append(f"| {', '.join(f'`{e}`' for e in envs)} | `{name}` | `{shown}` | {desc} |")
        lines.append("")
    return "\n".join(lines)
