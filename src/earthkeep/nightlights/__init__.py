"""Night-light electrification monitoring: areas, monthly Black Marble jobs, metrics, tiles.

Modules: ``geometry`` (GeoJSON checks), ``areas`` (the area catalogue),
``requests`` (jobs per area and month range), ``handlers`` (the job kinds),
``processing`` (composite, COG, zonal metrics), ``results`` (time series and
statistics), ``tiles`` (XYZ tiles), ``settings``, ``tables``.
"""
