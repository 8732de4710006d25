"""Forcing data for drift models: NOAA GFS 10 m wind and Copernicus Marine currents on a rolling window.

The Data Aggregator done right. Modules: ``settings`` (section
``[forcing_sources]``), ``tables`` (the seed's ``aggregator_*`` tables and file
leases), ``records`` (catalog + seed tables in step), ``claims`` (file leases),
``wind`` (GFS file pipeline), ``currents`` (Copernicus Marine runs), ``history``
(the 3-hourly analysis series and its gaps), ``collect`` (one collection of
both sources), ``retention`` (plan + apply by valid time), ``export`` (CF
NetCDF for OpenDrift), ``domain`` (job kinds, schedules, start-up hook).

``open_dataset(kind, start, end, bbox)`` returns the forcing as an
:class:`xarray.Dataset`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from earthkeep.forcing.domain import on_startup, register, schedules

if TYPE_CHECKING:
    import xarray as xr


def open_dataset(kind: str, start: Any, end: Any, bbox: Any = None, **kwargs: Any) -> xr.Dataset:
    """Wind (``kind="wind"``) or surface currents (``"currents"``) over ``start..end`` and ``bbox``
    (west, south, east, north) as one CF dataset; see :func:`earthkeep.forcing.export.open_dataset`."""
    from earthkeep.forcing.export import open_dataset as _open

    return _open(kind, start, end, bbox, **kwargs)


__all__ = ["on_startup", "open_dataset", "register", "schedules"]
