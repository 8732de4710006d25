"""The dashboard: a static web app over the JSON API, shipped inside the package.

Why a static app and not server-rendered pages: every figure the dashboard shows
already has a JSON endpoint (the same ones the CLI, STAC Browser and scripts
use), so the pages read exactly what an API client reads and cannot drift from
it; the api role gains no templates, no second rendering path and no extra
queries; and the pages can poll the endpoints while jobs run without the
server holding state per viewer. It is plain HTML and vanilla ES modules with no
build step: the files here are what the browser runs, so ``pip install`` needs
no Node.js and nothing is fetched at install or run time.

Layout:

- ``index.html``, ``app.css``, ``js/*.js``: the pages (hash routing), served at
  ``/`` and ``/ui/...`` by :mod:`earthkeep.api.web`;
- ``vendor/``: pinned, minified third-party files with their licences (Leaflet,
  uPlot, Swagger UI, ReDoc; versions in ``vendor/README.md``), so the maps,
  charts and ``/docs`` work with no internet.

The map draws no external base layer: the nightlights XYZ tiles and GeoJSON
footprints sit on a blank background, so a page never leaves the server's host.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent
"""The directory holding ``index.html`` and ``vendor/``."""
