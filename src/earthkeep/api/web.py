"""The dashboard at ``/`` and the API docs at ``/docs`` and ``/redoc``, all served from the package.

FastAPI's default docs load Swagger UI and ReDoc from a CDN and show a blank page
offline; :func:`install` replaces them with the same pages pointing at the
vendored files under ``/ui/vendor``. CORS headers are added only when
``EARTHKEEP_CORS_ORIGINS`` names some origins.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from starlette.middleware.cors import CORSMiddleware
from starlette.staticfiles import StaticFiles

from earthkeep.config import ApiSettings
from earthkeep.web import ROOT

VENDOR = "/ui/vendor"


def install(app: FastAPI, api: ApiSettings) -> None:
    """Mount the dashboard, the offline docs and (when configured) CORS on ``app``."""
    app.mount("/ui", StaticFiles(directory=ROOT, html=False), name="ui")
    app.add_api_route("/", index, include_in_schema=False, methods=["GET"])
    app.add_api_route("/docs", swagger, include_in_schema=False, methods=["GET"])
    app.add_api_route("/redoc", redoc, include_in_schema=False, methods=["GET"])
    origins = api.cors_origin_list()
    if origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=origins, allow_methods=["GET", "HEAD", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "X-Api-Key", "X-Request-Id"],
            expose_headers=["X-Request-Id", "X-Checksum-Sha256", "Content-Disposition"],
            allow_credentials=False, max_age=600,
        )


def index() -> FileResponse:
    """The dashboard (its scripts and styles are under ``/ui``)."""
    return FileResponse(ROOT / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})


def swagger() -> HTMLResponse:
    """Swagger UI over ``/openapi.json``, with its assets from the package."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json", title="earthkeep API",
        swagger_js_url=f"{VENDOR}/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url=f"{VENDOR}/swagger-ui/swagger-ui.css",
        swagger_favicon_url=f"{VENDOR}/swagger-ui/favicon-32x32.png",
    )


def redoc() -> HTMLResponse:
    """ReDoc over ``/openapi.json``, with its script from the package and system fonts."""
    return get_redoc_html(
        openapi_url="/openapi.json", title="earthkeep API", redoc_js_url=f"{VENDOR}/redoc/redoc.standalone.js",
        redoc_favicon_url=f"{VENDOR}/swagger-ui/favicon-32x32.png", with_google_fonts=False,
    )
