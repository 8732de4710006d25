"""FastAPI dependencies: the services, a DB session, the caller's API key."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from earthkeep.apikeys import KeyCache, check_scope, verify
from earthkeep.catalog.db import translate_errors
from earthkeep.catalog.tables import ApiKey
from earthkeep.runtime import Services


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_session(services: ServicesDep) -> Iterator[Session]:
    with translate_errors("catalog"), services.sessions() as session:
        yield session
        session.commit()


SessionDep = Annotated[Session, Depends(get_session)]


def _secret(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-api-key")


def key_cache(services: Services) -> KeyCache:
    """The process's cache of verified API keys (``EARTHKEEP_API_KEY_CACHE_SECONDS``)."""
    if services.api_keys is None:
        services.api_keys = KeyCache(services.settings.api.key_cache_s)
    return services.api_keys


def _verify(services: Services, secret: str | None) -> ApiKey:
    with translate_errors("catalog"), services.sessions.begin() as s:
        return verify(s, secret)


def require(scope: str) -> Callable[..., Any]:
    """Dependency: the request must carry a valid key holding ``scope``."""

    async def check(request: Request, services: ServicesDep) -> ApiKey:
        secret = _secret(request)
        cache = key_cache(services)
        key = cache.get(secret)
        if key is None:  # not verified recently: ask the catalog (off the event loop)
            key = await run_in_threadpool(_verify, services, secret)
            cache.put(secret, key)  # type: ignore[arg-type]
        check_scope(key, scope)
        request.state.api_key = key
        return key

    return check


async def optional_read(request: Request, services: ServicesDep) -> ApiKey | None:
    """Reads are open unless ``EARTHKEEP_PUBLIC_READ=false``; then they need the read scope."""
    if services.settings.api.public_read:
        return None
    return await require("read")(request, services)  # type: ignore[no-any-return]


optional_read.scope = "read"  # type: ignore[attr-defined]  # what the scope matrix test reads
optional_read.public = True  # type: ignore[attr-defined]  # open to anonymous callers unless EARTHKEEP_PUBLIC_READ=false
ReadDep = Annotated[ApiKey | None, Depends(optional_read)]
AdminDep = Annotated[ApiKey, Depends(require("admin"))]
