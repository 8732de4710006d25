"""Every provider emulator by name, with the settings that point earthkeep at it.

``earthkeep testbed serve NAME`` and ``earthkeep demo`` use this table:

========  ==========================================  ===========================================
name      emulates                                    earthkeep settings it prints
========  ==========================================  ===========================================
gfs       NOAA GFS on the AWS bucket, live schedule   ``FORCING_GFS_MIRRORS``, ``FORCING_GFS_AWS_URL``,
                                                      ``FORCING_GFS_GRID``
gina      GINA NRT products search, SDR files, TLEs   ``EARTHKEEP_GINA_URL``, ``EARTHKEEP_TLE_URL``,
                                                      ``EARTHKEEP_VIIRS_PLATFORMS``, ``..._SEGMENTS``
laads     LAADS DAAC archive of VNP46A2 tiles         ``NIGHTLIGHTS_LAADS_URL``, ``EARTHDATA_TOKEN``
ckan      a CKAN portal (data.gov's API)              ``EARTHKEEP_RESCUE_PORTAL``
files     a directory over HTTP with byte ranges      (none: ``earthkeep fetch URL``)
========  ==========================================  ===========================================

All of them also print ``EARTHKEEP_ALLOW_PRIVATE_URLS=true``: the emulators live on
loopback, which earthkeep refuses for user-supplied URLs unless allowed.
Every app is wrapped in :class:`earthkeep.testbed.faults.FaultInjector`, so
``--faults`` rules (or ``POST /_faults`` while running) apply to any of them.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp

from earthkeep.testbed.faults import Fault, FaultInjector


@dataclass(frozen=True)
class Options:
    """What a user can choose when starting an emulator."""

    root: Path
    grid: str = "1p00"
    datasets: int = 300
    token: str = ""
    granule_every_s: float = 85.4
    seed: int = 0


@dataclass
class Running:
    """An emulator's app, the settings for earthkeep (given its base URL) and its state object."""

    app: ASGIApp
    settings: Callable[[str], dict[str, str]]
    state: Any = None
    notes: list[str] = field(default_factory=list)

    def environment(self, base_url: str) -> dict[str, str]:
        return {**self.settings(base_url.rstrip("/")), "EARTHKEEP_ALLOW_PRIVATE_URLS": "true"}


def _gfs(opts: Options) -> Running:
    from earthkeep.testbed.gfs_live import LiveGfs

    archive = LiveGfs(opts.root / "gfs", seed=opts.seed)
    return Running(archive.app(), lambda url: {
        "FORCING_GFS_MIRRORS": "aws", "FORCING_GFS_AWS_URL": url, "FORCING_GFS_GRID": opts.grid,
    }, archive, [f"cycles appear {archive.first_hour_lag} after 00/06/12/18 UTC, as on NOAA's bucket"])


GINA_SEGMENTS = ("GMTCO", "SVM15", "SVM16")
GINA_BACKLOG_SLOTS = 4


def _gina(opts: Options) -> Running:
    from earthkeep.testbed.gina import GinaNrt

    nrt = GinaNrt(opts.root / "gina", segments=GINA_SEGMENTS, grow_every_s=opts.granule_every_s)
    nrt.add_granules(GINA_BACKLOG_SLOTS)
    return Running(nrt.app(), lambda url: {
        "EARTHKEEP_GINA_URL": url, "EARTHKEEP_TLE_URL": f"{url}/elements/weather.txt",
        "EARTHKEEP_VIIRS_PLATFORMS": ",".join(nrt.platforms), "EARTHKEEP_VIIRS_SEGMENTS": ",".join(nrt.segments),
    }, nrt, [f"a new granule of every platform and segment every {opts.granule_every_s:g} s"])


def _laads(opts: Options) -> Running:
    from earthkeep.testbed.laads import LaadsArchive

    token = opts.token or secrets.token_urlsafe(24)
    archive = LaadsArchive(opts.root / "laads", token=token)
    return Running(archive.app(), lambda url: {"NIGHTLIGHTS_LAADS_URL": url, "EARTHDATA_TOKEN": token}, archive,
                   [f"VNP46A2 tiles h{archive.tiles[0][0]}v{archive.tiles[0][1]} and neighbours, any day"])


def _ckan(opts: Options) -> Running:
    from earthkeep.testbed.ckan import CkanEmulator, create_ckan_app
    from earthkeep.testbed.ckan_catalog import PortalSpec, SyntheticPortal

    emu = CkanEmulator(SyntheticPortal(PortalSpec(datasets=opts.datasets, seed=opts.seed or 42)))
    return Running(create_ckan_app(emu, faults=False), lambda url: {"EARTHKEEP_RESCUE_PORTAL": url}, emu,
                   [f"{opts.datasets} datasets under /api/3/action/package_search"])


def _files(opts: Options) -> Running:
    from earthkeep.testbed.fileserver import create_file_app

    opts.root.mkdir(parents=True, exist_ok=True)
    return Running(create_file_app(opts.root), lambda url: {}, None,
                   [f"{opts.root} with byte ranges: earthkeep fetch <url>/<file>"])


EMULATORS: dict[str, tuple[str, Callable[[Options], Running]]] = {
    "gfs": ("NOAA GFS 0.25/0.5/1.0 deg GRIB2 + .idx on the AWS bucket layout, published on NOAA's schedule", _gfs),
    "gina": ("GINA NRT: VIIRS SDR granules search, HDF5 files and orbital elements", _gina),
    "laads": ("LAADS DAAC: Black Marble VNP46A2 daily tiles behind an Earthdata token", _laads),
    "ckan": ("a CKAN portal like catalog.data.gov (package_search, organizations, resources)", _ckan),
    "files": ("a directory over HTTP with byte ranges, HEAD and ETag", _files),
}


def start(name: str, opts: Options, faults: Sequence[Fault | Mapping[str, Any]] = ()) -> Running:
    """Build emulator ``name`` with ``opts``; its app answers ``POST /_faults`` and applies ``faults``."""
    if name not in EMULATORS:
        raise KeyError(f"unknown emulator {name!r}; known: {', '.join(EMULATORS)}")
    running = EMULATORS[name][1](opts)
    rules = [f if isinstance(f, Fault) else Fault.from_dict(f) for f in faults]
    running.app = FaultInjector(running.app, rules, seed=opts.seed)
    return running


def shell_lines(env: Mapping[str, str]) -> list[str]:
    """``export K=V`` lines, quoted for POSIX shells."""
    import shlex

    return [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
