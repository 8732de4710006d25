"""Readers and checks for gridded data (GRIB, NetCDF, GeoTIFF)."""
