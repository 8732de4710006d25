"""Every write operation of the API against seven credentials, on SQLite and PostgreSQL.

The operations are read from ``app.openapi()``: every non-GET operation, plus
every GET whose route declares a ``require(<scope>)`` dependency (e.g.
``GET /observations/dead-letters``). The scope a route needs is read from its
dependency tree (``route.dependant``): ``earthkeep.api.deps.require(scope)``
returns a closure over ``scope``; a ``scope`` attribute on the callable is
honoured too. A write route that declares no scope fails ``test_route_declares_a_scope``
with its name.

Expectations, from ``earthkeep.apikeys``: no key, an unknown key and a revoked
key are 401 (``verify``); a valid key is 403 unless it holds the scope or
``admin`` (``check_scope``: "admin holds all"); a sufficient key gets anything
but 401/403 (an empty body may well be 422, a made-up id 404). FastAPI solves
the auth dependencies before it validates path, query and body parameters, so
no route checks existence before auth; only a body that is not JSON at all
would be refused (422) before the dependencies run, which is why ``{}`` is sent.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from earthkeep.api.app import create_app
from earthkeep.api.deps import require
from earthkeep.apikeys import create_key, revoke_key
from earthkeep.runtime import Services
from earthkeep.settings import load_settings
from earthkeep.store.obstore import ObstoreStore

CREDENTIALS = ("anonymous", "wrong", "revoked", "read", "ingest", "node", "admin")
UNAUTHENTICATED = ("anonymous", "wrong", "revoked")
WRONG_SECRET = "ek_wrong" + "x" * 40
IGNORED_METHODS = {"HEAD", "OPTIONS"}
# Bodies that keep a sufficient key's request cheap; every other operation gets ``{}``.
BODIES: dict[tuple[str, str], Any] = {
    # a running generator would keep writing to the catalog during the other tests
    ("POST", "/generator/start"): {"stations": 1, "rate": 1, "batch_size": 1, "duration_s": 0.2},
}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    scopes: frozenset[str]  # declared by require(...) dependencies; empty = none declared
    has_body: bool
    public: bool = False

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


# ------------------------------------------------------- reading the scopes


def scope_of(call: Callable[..., Any] | None) -> str | None:
    """The scope a dependency callable demands, or None when it is not a scope check."""
    if call is None:
        return None
    declared = getattr(call, "scope", None)
    if isinstance(declared, str):
        return declared
    if getattr(call, "__qualname__", "").startswith(f"{require.__qualname__}.<locals>."):
        scope = inspect.getclosurevars(call).nonlocals.get("scope")
        return scope if isinstance(scope, str) else None
    return None


def declared_scopes(dependant: Dependant) -> frozenset[str]:
    """Every scope demanded anywhere in the dependency tree (route- and router-level dependencies included)."""
    found = {s for s in [scope_of(dependant.call)] if s}
    for sub in dependant.dependencies:
        found |= declared_scopes(sub)
    return frozenset(found)


def is_public(dependant: Dependant) -> bool:
    """Whether the only scope check is a public read (``optional_read``): no key needed by default."""
    calls = []

    def walk(d: Dependant) -> None:
        if scope_of(d.call):
            calls.append(d.call)
        for sub in d.dependencies:
            walk(sub)

    walk(dependant)
    return bool(calls) and all(getattr(c, "public", False) for c in calls)


def _routes(app: FastAPI) -> dict[tuple[str, str], tuple[frozenset[str], bool]]:
    out: dict[tuple[str, str], tuple[frozenset[str], bool]] = {}
    for rc in iter_route_contexts(app.routes):
        dependant = getattr(rc, "dependant", None)
        if dependant is None or not rc.methods:
            continue
        for method in rc.methods:
            out[(method.upper(), str(rc.path))] = (declared_scopes(dependant), is_public(dependant))
    return out


def operations(app: FastAPI) -> list[Operation]:
    """Every non-GET operation of the OpenAPI, plus the GETs that declare a scope."""
    routes = _routes(app)
    ops = []
    for path, item in app.openapi()["paths"].items():
        for method, spec in item.items():
            method = method.upper()
            if method in IGNORED_METHODS:
                continue
            scopes, public = routes.get((method, path), (frozenset(), False))
            if method == "GET" and (not scopes or public):
                continue
            ops.append(Operation(method, path, scopes, "requestBody" in spec, public))
    return sorted(ops, key=lambda o: (o.path, o.method))


def holds(key_scopes: set[str], needed: frozenset[str]) -> bool:
    """``earthkeep.apikeys.check_scope``: a key passes when it holds the scope or ``admin``."""
    return "admin" in key_scopes or needed <= key_scopes


# ------------------------------------------------------------- the app


def _collection_app(tmp: Path) -> FastAPI:
    # Only used to list the routes at collection time: no lifespan runs, nothing is opened.
    return create_app(load_settings(catalog={"database_url": f"sqlite:///{tmp}/unused.db"}))


OPERATIONS = operations(_collection_app(Path("/nonexistent")))


@dataclass
class Api:
    client: TestClient
    secrets: dict[str, str | None]


def _key(services: Services, *scopes: str) -> str:
    with services.sessions.begin() as s:
        return create_key(s, f"matrix-{'-'.join(scopes)}", scopes)[1]


def _revoked(services: Services) -> str:
    with services.sessions.begin() as s:
        key, secret = create_key(s, "matrix-revoked", ["admin"])
        revoke_key(s, key.id)
    return secret


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One app per catalog backend for the whole module, with a key of each scope and a revoked one."""
    tmp = tmp_path_factory.mktemp(f"scopes-{request.param}")
    server, name = None, f"t_scopes_{uuid.uuid4().hex[:16]}"
    if request.param == "sqlite":
        url = f"sqlite:///{tmp}/catalog.db"
    else:
        server = request.getfixturevalue("postgres_server")
        if not server.running:  # a previous test stopped it
            server.start()
        url = server.create_database(name)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)
        services = Services.open(load_settings(catalog={"database_url": url}),
                                 store=ObstoreStore.local(tmp / "store"))
        secrets: dict[str, str | None] = {"anonymous": None, "wrong": WRONG_SECRET, "revoked": _revoked(services)}
        secrets |= {scope: _key(services, scope) for scope in ("read", "ingest", "node", "admin")}
        try:
            with TestClient(create_app(services=services)) as client:
                yield Api(client, secrets)
        finally:
            services.close()
            if server is not None:
                with contextlib.suppress(Exception):
                    server.drop_database(name)


def _send(api: Api, op: Operation, credential: str) -> Any:
    path = re.sub(r"\{[^}]+\}", "1", op.path)  # ids that may not exist: 404 is fine past auth
    secret = api.secrets[credential]
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    body = BODIES.get((op.method, op.path), {} if op.has_body else None)
    return api.client.request(op.method, path, headers=headers, json=body)


# ---------------------------------------------------------------- the tests


def test_the_matrix_covers_the_write_routes() -> None:
    ids = {op.id for op in OPERATIONS}
    assert {"POST /jobs", "POST /areas", "POST /observations", "POST /tasks/claim", "POST /forcing/collect"} <= ids
    assert len(OPERATIONS) >= 20


def test_an_unscoped_write_route_would_be_caught(tmp_path: Path) -> None:
    app = _collection_app(tmp_path)

    @app.post("/unscoped")
    def unscoped() -> dict[str, str]:
        return {}

    @app.post("/scoped-by-router", dependencies=[Depends(require("node"))])
    def scoped() -> dict[str, str]:
        return {}

    found = {op.id: op.scopes for op in operations(app)}
    assert found["POST /unscoped"] == frozenset()
    assert found["POST /scoped-by-router"] == {"node"}
    assert found["POST /jobs"] == {"admin"}


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda o: o.id)
def test_route_declares_a_scope(op: Operation) -> None:
    assert op.scopes, (f"{op.id} declares no API-key scope: add a Depends(require('<scope>')) dependency "
                       "(write routes must need a key)")
    unknown = op.scopes - set(CREDENTIALS[3:])
    assert not unknown, f"{op.id} requires unknown scope(s) {sorted(unknown)}"


@pytest.mark.parametrize("credential", CREDENTIALS)
@pytest.mark.parametrize("op", OPERATIONS, ids=lambda o: o.id)
def test_scope(api: Api, op: Operation, credential: str) -> None:
    if not op.scopes:
        pytest.fail(f"{op.id} declares no API-key scope (see test_route_declares_a_scope)")
    r = _send(api, op, credential)
    seen = f"{op.id} with {credential} key -> {r.status_code} {r.text[:300]}"
    if op.public:  # a read by POST (STAC search): open to everyone while EARTHKEEP_PUBLIC_READ is true
        assert r.status_code not in (401, 403), seen
    elif credential in UNAUTHENTICATED:
        assert r.status_code == 401, seen
        assert r.headers.get("www-authenticate") == "Bearer", seen
    elif holds({credential}, op.scopes):
        assert r.status_code not in (401, 403), f"{seen} (needs {sorted(op.scopes)})"
    else:
        assert r.status_code == 403, f"{seen} (needs {sorted(op.scopes)})"
        assert all(s in r.json()["detail"] for s in op.scopes), seen
