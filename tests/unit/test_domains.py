"""The domain contract: every registered domain keeps its declarations, and the registry finds them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer
from fastapi import APIRouter

from earthkeep import domains
from earthkeep.config import SECTIONS, ConfigError
from earthkeep.domain import resolve
from earthkeep.errors import NotFound
from earthkeep.ingest.domain import DOMAIN as INGEST
from earthkeep.ingest.settings import IngestSettings
from earthkeep.nightlights.domain import DOMAIN as NIGHTLIGHTS
from earthkeep.nightlights.domain import NightlightsState
from earthkeep.nightlights.settings import NightlightsSettings
from earthkeep.rescue.domain import DOMAIN as RESCUE
from earthkeep.runtime import Services
from earthkeep.settings import load_settings
from earthkeep.store.memory import MemoryStore

# The catalog's tables as the migrations know them (written down before the registry gathered them).
TABLES = {
    "aggregator_collection_status", "aggregator_datasets", "api_keys", "assets", "forcing_claims",
    "granule_failures", "granule_locks", "granule_messages", "granule_tasks", "ingest_consumer_stats",
    "ingest_dead_letters", "ingest_hourly", "ingest_observations", "ingest_stations", "items", "jobs",
    "nl_areas", "nl_inputs", "nl_requests", "nl_results", "rescue_allocations", "rescue_asset_kinds",
    "rescue_assets", "rescue_copies", "rescue_dataset_history", "rescue_datasets", "rescue_harvests",
    "rescue_nodes", "rescue_organizations", "rescue_resources", "runs", "service_instances",
}
CORE_TABLES = {"api_keys", "assets", "items", "jobs", "runs", "service_instances"}
HEAVY = ("xarray", "rasterio", "numba", "eccodes", "fastapi", "h5py", "h5netcdf", "exactextract", "typer")


@pytest.fixture
def services(tmp_path: Path):
    svc = Services.open(load_settings(catalog={"database_url": f"sqlite:///{tmp_path}/c.db"}), store=MemoryStore())
    yield svc
    svc.close()


def test_every_domain_job_kind_is_registered_by_open_and_no_other(services):
    declared = {kind for d in domains.DOMAINS for kind in d.job_kinds}
    assert len(declared) == sum(len(d.job_kinds) for d in domains.DOMAINS)  # no kind declared twice
    assert set(services.registry.names()) == declared
    assert {"fetch", "forcing.collect", "laads_download", "ingest.retention", "rescue.reap"} <= declared


def test_names_and_settings_sections_are_unique():
    names = [d.name for d in domains.DOMAINS]
    assert names == ["nightlights", "granules", "ingest", "forcing", "rescue", "downloads"]
    sections = [cls.section for cls in (*SECTIONS, *domains.settings_classes())]
    assert len(sections) == len(set(sections)), sections
    assert {"forcing", "forcing_sources", "granules", "mail", "viirs", "nightlights", "ingest", "rescue"} <= set(
        sections)
    assert {"forcing", "granules", "mail"}.isdisjoint(cls.section for cls in SECTIONS)  # no longer in core


def test_every_declared_router_and_cli_resolves():
    assert all(isinstance(r, APIRouter) for r in domains.routers())
    assert len(domains.routers()) == sum(1 for d in domains.DOMAINS if d.router)
    commands = dict(domains.cli_commands())
    assert list(commands) == ["areas", "nightlights", "granules", "tasks", "stations", "weather", "forcing",
                              "cleanup", "rescue", "fetch"]
    for name, target in commands.items():
        assert isinstance(target, typer.Typer) or callable(target), name
    with pytest.raises(ConfigError, match="module:attr"):
        resolve("earthkeep.api.routers.rescue")


def test_an_unknown_domain_is_a_clear_error(services):
    with pytest.raises(NotFound, match=r"no domain 'weather'; known domains: nightlights, granules, .*downloads"):
        domains.get("weather")
    with pytest.raises(NotFound, match="known domains"):
        services.domain("weather")
    assert services.domain("rescue").domain is RESCUE


def test_the_gathered_metadata_has_exactly_the_migrated_tables():
    from earthkeep.catalog.schema import DOMAIN_TABLES, metadata

    assert set(metadata.tables) == TABLES
    assert {t.name for t in DOMAIN_TABLES} == TABLES - CORE_TABLES
    by_domain = {d.name: {t.name for t in domains.tables() if t in _tables_of(d)} for d in domains.DOMAINS}
    assert by_domain["forcing"] == {"aggregator_collection_status", "aggregator_datasets", "forcing_claims"}
    assert by_domain["downloads"] == set()


def _tables_of(domain):
    import importlib

    from sqlalchemy import Table

    out = []
    for name in domain.tables:
        for value in vars(importlib.import_module(name)).values():
            table = getattr(value, "__table__", value)
            if isinstance(table, Table):
                out.append(table)
    return out


def test_a_domain_sees_its_typed_section_and_an_override_stays_in_its_process(tmp_path, services):
    ctx = NIGHTLIGHTS.of(services)
    assert isinstance(ctx.section, NightlightsSettings) and ctx.section is services.settings.nightlights
    other = Services.open(services.settings, migrate=False, store=MemoryStore())
    try:
        services.use_settings(NightlightsSettings(tile_max_zoom=9))
        assert ctx.section.tile_max_zoom == 9 == services.settings.of(NightlightsSettings).tile_max_zoom
        assert other.settings.of(NightlightsSettings).tile_max_zoom != 9
        assert isinstance(INGEST.of(services).section, IngestSettings)
    finally:
        other.close()
    with pytest.raises(ConfigError, match=r"no settings section \[nope\]"):
        class Nope(NightlightsSettings):
            section = "nope"
        services.settings.of(Nope)
    with pytest.raises(AttributeError, match="no settings section 'nope'"):
        _ = services.settings.nope


def test_a_domain_state_is_made_once_per_process(services):
    state = NIGHTLIGHTS.of(services).state
    assert isinstance(state, NightlightsState) and NIGHTLIGHTS.of(services).state is state
    assert services.domain("nightlights").state is state
    other = Services.open(services.settings, migrate=False, store=MemoryStore())
    try:
        assert NIGHTLIGHTS.of(other).state is not state
    finally:
        other.close()
    assert RESCUE.of(services).state.reaped_at == float("-inf")
    with pytest.raises(TypeError, match="'downloads' declares no state"):
        _ = services.domain("downloads").state
    with pytest.raises(ConfigError, match="'downloads' declares no settings section"):
        _ = services.domain("downloads").section


def test_the_domain_modules_are_light_to_import():
    code = ("import sys, earthkeep.domains, earthkeep.catalog.schema; "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"importing the domain registry imported {out}"
