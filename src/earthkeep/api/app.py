"""``create_app()``: the FastAPI application over one process's services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from earthkeep import __version__
from earthkeep.api import errors, web
from earthkeep.api.metrics import CatalogCollector
from earthkeep.api.middleware import HttpMetrics, RequestContext
from earthkeep.api.routers import health, items, jobs, runs, stac
from earthkeep.api.schemas import ErrorOut
from earthkeep.config import Settings
from earthkeep.domains import routers
from earthkeep.runtime import Services
from earthkeep.settings import load_settings


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> FastAPI:
    """Build the API. Without ``services`` the lifespan opens (and closes) its own."""
    settings = settings or (services.settings if services else load_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = services is None
        app.state.services = services or Services.open(settings)
        app.state.metrics_registry.register(CatalogCollector(app.state.services))
        try:
            yield
        finally:
            if own:
                app.state.services.close()

    app = FastAPI(
        title="earthkeep", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
        responses={422: {"model": ErrorOut, "description": "a parameter or the body is invalid (named in detail)"}},
        description="Collect, keep and serve environmental data. Write endpoints need an API key "
                    "(`Authorization: Bearer <key>`); create one with `earthkeep keys create --scope admin`.",
    )
    registry = CollectorRegistry()
    app.state.metrics_registry = registry
    app.add_middleware(RequestContext, max_body=settings.api.max_body_bytes, metrics=HttpMetrics(registry))
    errors.install(app)
    for router in (health.router, items.router, jobs.router, runs.router, stac.router):
        app.include_router(router)

    for router in routers():  # each domain's Domain.router
        app.include_router(router)
    web.install(app, settings.api)  # the dashboard at /, offline /docs and /redoc, CORS when configured
    return app
