"""Safety checks for URLs that users hand us (server-side request forgery guard).

A user-supplied URL must be ``http`` or ``https`` and every address its host
resolves to must be public: loopback, private (RFC 1918, ULA), link-local,
shared (CGNAT), multicast, reserved and unspecified addresses are refused unless
the operator sets ``allow_private`` (``EARTHKEEP_ALLOW_PRIVATE_URLS``).

The check resolves the name itself; a DNS answer that changes between the check
and the connection (rebinding) is not covered here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from urllib.parse import SplitResult, urlsplit

from earthkeep.errors import InvalidInput

Resolver = Callable[[str, int], Iterable[str]]

_SCHEMES = {"http": 80, "https": 443}
_HOST = re.compile(r"^(\[?[0-9a-fA-F:.%]+\]?|[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?)$")  # IP literal or name


def check_url(url: str, allow_private: bool, *, resolve: Resolver | None = None) -> str:
    """Return ``url`` when it may be fetched, else raise :class:`InvalidInput`.

    ``resolve(host, port)`` returns the host's addresses; the default asks the
    system resolver. With ``allow_private=True`` only the scheme and host are checked.
    """
    parts, host, port = _split(url)
    if allow_private:
        return url
    addresses = list((resolve or _system_resolve)(host, port))
    _check_addresses(parts, host, addresses)
    return url


async def check_url_async(url: str, allow_private: bool) -> str:
    """Like :func:`check_url`, resolving the host without blocking the event loop."""
    parts, host, port = _split(url)
    if allow_private:
        return url
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise InvalidInput(f"URL {url!r}: host {host!r} cannot be resolved ({exc})") from exc
        addresses = [str(info[4][0]) for info in infos]
    _check_addresses(parts, host, addresses)
    return url


def check_url_offline(url: str, allow_private: bool) -> str:
    """The checks that need no DNS: scheme, host, and hosts that are addresses already.

    Used when a URL is accepted (``POST /jobs``): literal IPv4 and IPv6 addresses,
    the legacy IPv4 forms ``getaddrinfo`` also accepts (``2130706433``, ``0x7f000001``,
    ``127.1``) and ``localhost`` names are judged at once; other names are judged
    by :func:`check_url` when the worker resolves them.
    """
    parts, host, _ = _split(url)
    if allow_private:
        return url
    address = _literal_address(host)
    if address is not None:
        _check_addresses(parts, host, [address])
    return url


def _literal_address(host: str) -> str | None:
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return "127.0.0.1"
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        pass
    try:
        return socket.inet_ntoa(socket.inet_aton(name))  # 2130706433, 0x7f000001, 0177.0.0.1, 127.1
    except OSError:
        return None


def _split(url: str) -> tuple[SplitResult, str, int]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(f"URL {url!r} is malformed: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise InvalidInput(f"URL {url!r}: only http:// and https:// URLs can be fetched, not {scheme or 'none'!r}")
    host = parts.hostname
    if not host:
        raise InvalidInput(f"URL {url!r} has no host")
    if not _HOST.match(host):
        raise InvalidInput(f"URL {url!r}: {host!r} is not a host name or address")
    return parts, host, port or _SCHEMES[scheme]


def _system_resolve(host: str, port: int) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise InvalidInput(f"host {host!r} cannot be resolved ({exc})") from exc
    return [str(info[4][0]) for info in infos]


def _check_addresses(parts: SplitResult, host: str, addresses: list[str]) -> None:
    if not addresses:
        raise InvalidInput(f"URL {parts.geturl()!r}: host {host!r} has no address")
    for text in addresses:
        reason = non_public_reason(text)
        if reason is not None:
            raise InvalidInput(
                f"URL {parts.geturl()!r}: host {host!r} resolves to {text}, a {reason} address; "
                "only public hosts may be fetched (set EARTHKEEP_ALLOW_PRIVATE_URLS=true to allow it)"
            )


def non_public_reason(address: str) -> str | None:
    """Why ``address`` is not a public unicast address (``"loopback"``, ``"private"``...), or ``None``."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    checks = (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("unspecified", ip.is_unspecified),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
    )
    for name, hit in checks:
        if hit:
            return name
    if not ip.is_global:
        return "non-global"
    return None
