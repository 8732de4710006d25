"""Which transport carries which request, so a fault can reset or close that very connection.

ASGI hides the socket from applications. Servers started by
:mod:`earthkeep.testbed.runner` use :func:`tracking_protocol`, which records
each connection's transport under its ``(server, client)`` address pair, the
same pair an ASGI scope carries.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import Scope


class ConnectionRegistry:
    """Transports of live connections, keyed by ``(server address, client address)``."""

    def __init__(self) -> None:
        self._transports: dict[tuple[Any, Any], asyncio.Transport] = {}

    def add(self, server: Any, client: Any, transport: asyncio.Transport) -> None:
        """Remember the transport of a new connection."""
        self._transports[(_addr(server), _addr(client))] = transport

    def remove(self, server: Any, client: Any) -> None:
        """Forget a closed connection."""
        self._transports.pop((_addr(server), _addr(client)), None)

    def get(self, scope: Scope) -> asyncio.Transport | None:
        """The transport carrying the request of ``scope``, when known."""
        return self._transports.get((_addr(scope.get("server")), _addr(scope.get("client"))))


CONNECTIONS = ConnectionRegistry()


def _addr(value: Any) -> tuple[Any, ...] | None:
    return None if value is None else tuple(value)[:2]


def tracking_protocol() -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (httptools when installed, else h11) registering transports."""
    base: Any = _base_protocol()

    class TrackingProtocol(base):  # type: ignore[misc, valid-type]
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            CONNECTIONS.add(self.server, self.client, transport)

        def connection_lost(self, exc: Exception | None) -> None:
            CONNECTIONS.remove(self.server, self.client)
            super().connection_lost(exc)

    return TrackingProtocol


def _base_protocol() -> type[asyncio.Protocol]:
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol
    return HttpToolsProtocol
