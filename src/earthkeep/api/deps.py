"""FastAPI dependencies: the services, a DB session, the caller's API key."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from earthkeep.apikeys import authenticate
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


def require(scope: str) -> Callable[..., ApiKey]:
    """Dependency: the request must carry a valid key holding ``scope``."""

    def check(request: Request, services: ServicesDep) -> ApiKey:
        with translate_errors("catalog"), services.sessions.begin() as s:
            key = authenticate(s, _secret(request), scope)
        request.state.api_key = key
        return key

    return check


def optional_read(request: Request, services: ServicesDep) -> ApiKey | None:
    """Reads are open unless ``EARTHKEEP_PUBLIC_READ=false``; then they need the read scope."""
    if services.settings.api.public_read:
        return None
    return require("read")(request, services)


ReadDep = Annotated[ApiKey | None, Depends(optional_read)]
AdminDep = Annotated[ApiKey, Depends(require("admin"))]
