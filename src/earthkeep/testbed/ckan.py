"""A CKAN action API emulator (catalog.data.gov-like) with the data hosts its resources point at.

What it covers, on one loopback server (:func:`create_ckan_app`):

* ``GET|POST /api/action/package_search`` with CKAN's response shape
  (``{"help", "success", "result": {"count", "sort", "results", "facets",
  "search_facets"}}``) and its limits: ``rows`` capped at 1000 (silently, like
  ``ckan.search.rows_max``), negative ``rows``/``start`` refused with a
  ``Validation Error``; ``q`` (``*:*``, ``field:value``, free text), ``fq``
  (``field:value``, ``field:"v"``, ``field:(a OR b)``, ranges ``[a TO b]``,
  ``{a TO b}``, ``[a TO *]``, optional ``+``, ``AND``) over ``metadata_modified``,
  ``metadata_created``, ``organization``, ``groups``, ``tags``, ``res_format``,
  ``name``, ``id``; ``sort`` on ``metadata_modified``/``metadata_created``/``name``
  (default ``score desc, metadata_modified desc``); ``start``; ``fl``;
  ``facet.field``; a bad query gives ``409`` with a ``Search Query Error``;
* ``organization_list`` (names, or dicts with ``all_fields``; ``limit``/``offset``),
  ``organization_show``, ``package_show``, ``package_list`` (``limit``/``offset``);
  unknown ids give ``404`` with a ``Not Found Error``, unknown actions ``400``;
* the data hosts: ``/files/...`` (deterministic bytes, HEAD, single byte ranges),
  ``/redirect/...`` (302 to the file), ``/slow/...`` and ``/flaky/...`` (delays and
  503s through :class:`earthkeep.testbed.faults.FaultInjector`), ``/gone/...``
  (404), ``/pages/...`` (HTML landing pages with links), ``/api/data/...`` (JSON),
  ``/arcgis/...`` and ``/wms`` (services);
* changes over time: ``POST /_ckan/advance`` ``{"created", "modified", "removed",
  "hours"}`` or :meth:`SyntheticPortal.advance`;
* misbehaviour on demand: :attr:`CkanEmulator.malformed` maps an action to
  ``"html"`` (an HTML error page with 200), ``"not_json"``, ``"no_result"``,
  ``"bad_results"`` (results that are not dataset objects) or ``"bad_count"``;
* a latency model (:class:`Latency`) standing in for a real portal's Solr + CKAN
  work: a fixed cost per request, a cost per dataset returned and a cost per
  thousand rows skipped with ``start`` (deep paging makes Solr collect
  ``start + rows`` documents). It sleeps without using CPU, like a remote server.

Not covered: authentication, write actions, ``include_drafts``, Solr ``OR``
between fields, spatial search, ``package_revise``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from earthkeep.testbed.ckan_catalog import FILES, PortalSpec, SyntheticPortal, content_bytes
from earthkeep.testbed.ckan_search import ParamError, SearchError, search
from earthkeep.testbed.faults import Fault, FaultInjector

HELP = "{base}/api/3/action/help_show?name={action}"
MEDIA = {f"{f[1]}": f[2] for f in FILES}


@dataclass
class Latency:
    """Simulated server time of ``package_search`` (seconds)."""

    per_request_s: float = 0.0
    per_dataset_s: float = 0.0
    per_1000_skipped_s: float = 0.0

    def cost(self, returned: int, start: int) -> float:
        return self.per_request_s + self.per_dataset_s * returned + self.per_1000_skipped_s * start / 1000


@dataclass
class CkanEmulator:
    """The state behind the app: the portal, the latency model, injected malformations, counters."""

    portal: SyntheticPortal
    latency: Latency = field(default_factory=Latency)
    malformed: dict[str, str] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _ok(request: Request, action: str, result: Any, emu: CkanEmulator) -> Response:
    base = _base(request)
    mode = emu.malformed.get(action)
    if mode == "html":
        return Response("<html><body><h1>502 Bad Gateway</h1></body></html>", media_type="text/html")
    if mode == "not_json":
        return Response('{"help": "x", "success": tr', media_type="application/json")
    doc: dict[str, Any] = {"help": HELP.format(base=base, action=action), "success": True, "result": result}
    if mode == "no_result":
        doc.pop("result")
    elif mode == "bad_results" and isinstance(result, dict):
        result["results"] = ["not-a-dataset", {"name": "no-id"}]
    elif mode == "bad_count" and isinstance(result, dict):
        result["count"] = "many"
    text = emu.portal.render(json.dumps(doc), base)
    return Response(text, media_type="application/json;charset=utf-8")


def _error(request: Request, action: str, status: int, etype: str, message: str, **extra: Any) -> Response:
    err = {"__type": etype, "message": message, **extra}
    doc = {"help": HELP.format(base=_base(request), action=action), "success": False, "error": err}
    return JSONResponse(doc, status_code=status)


async def _params(request: Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.query_params)
    if request.method == "POST":
        body = await request.body()
        if body:
            try:
                doc = json.loads(body)
            except ValueError:
                doc = None
            if not isinstance(doc, dict):
                raise ParamError("body", "request body must be a JSON object")
            params.update(doc)
    return params


def _int(params: dict[str, Any], name: str, default: int) -> int:
    value = params.get(name, default)
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ParamError(name, "Invalid integer") from None
    if n < 0:
        raise ParamError(name, "Must be a natural number")
    return n


def _org_dict(org: dict[str, Any]) -> dict[str, Any]:
    return {**org, "display_name": org["title"], "num_followers": 0, "users": [], "extras": []}


class _Actions:
    def __init__(self, emu: CkanEmulator) -> None:
        self.emu = emu

    @property
    def portal(self) -> SyntheticPortal:
        return self.emu.portal

    async def package_search(self, p: dict[str, Any]) -> Any:
        rows = min(_int(p, "rows", 10), 1000)
        start = _int(p, "start", 0)
        result = search(self.portal, p, rows=rows, start=start)
        await asyncio.sleep(self.emu.latency.cost(len(result["results"]), start))
        return result

    async def package_show(self, p: dict[str, Any]) -> Any:
        ds = self.portal.get(str(p.get("id", "")))
        if ds is None:
            raise LookupError("Dataset not found")
        return ds

    async def package_list(self, p: dict[str, Any]) -> Any:
        names = sorted(d["name"] for d in self.portal.order)
        offset = _int(p, "offset", 0)
        limit = _int(p, "limit", len(names))
        return names[offset:offset + limit]

    async def organization_list(self, p: dict[str, Any]) -> Any:
        orgs = sorted(self.portal.orgs.values(), key=lambda o: o["name"])
        offset, limit = _int(p, "offset", 0), min(_int(p, "limit", 1000), 1000)
        page = orgs[offset:offset + limit]
        if str(p.get("all_fields", "")).lower() in ("true", "1"):
            return [_org_dict(o) for o in page]
        return [o["name"] for o in page]

    async def organization_show(self, p: dict[str, Any]) -> Any:
        key = str(p.get("id", ""))
        for org in self.portal.orgs.values():
            if key in (org["id"], org["name"]):
                return _org_dict(org)
        raise LookupError("Organization not found")


def _action_route(emu: CkanEmulator) -> Any:
    actions = _Actions(emu)

    async def action(request: Request) -> Response:
        name = request.path_params["action"]
        fn = getattr(actions, name, None)
        if fn is None or name.startswith("_"):
            return _error(request, name, 400, "Bad Request", f"Action name not known: {name}")
        emu.calls[name] = emu.calls.get(name, 0) + 1
        try:
            result = await fn(await _params(request))
        except ParamError as exc:
            return _error(request, name, 409, "Validation Error", "", **{exc.args[0]: [exc.args[1]]})
        except SearchError as exc:
            return _error(request, name, 409, "Search Query Error", f"Search Query Error: {exc}")
        except LookupError as exc:
            return _error(request, name, 404, "Not Found Error", str(exc.args[0]))
        return _ok(request, name, result, emu)

    return action


# ------------------------------------------------------------------ data hosts


def _file(emu: CkanEmulator, path: str, request: Request) -> Response:
    size = emu.portal.files.get(path)
    if size is None:
        return Response("not found\n", status_code=404, media_type="text/plain")
    ext = path.rsplit(".", 1)[-1]
    tag = hashlib.md5(path.encode()).hexdigest()[:12]
    headers = {"accept-ranges": "bytes", "etag": f'"{tag}-{size}"',
               "last-modified": "Mon, 01 Jan 2024 00:00:00 GMT"}
    media = MEDIA.get(ext, "application/octet-stream")
    if request.method == "HEAD":
        return Response(b"", headers={**headers, "content-length": str(size)}, media_type=media)
    data = content_bytes(path, size)
    rng = request.headers.get("range", "")
    if rng.startswith("bytes=") and "," not in rng:
        first, _, last = rng[6:].partition("-")
        a = int(first) if first else max(size - int(last), 0)
        b = min(int(last), size - 1) if first and last else size - 1
        if a >= size:
            return Response(b"", status_code=416, headers={"content-range": f"bytes */{size}"})
        headers["content-range"] = f"bytes {a}-{b}/{size}"
        return Response(data[a:b + 1], status_code=206, headers=headers, media_type=media)
    return Response(data, headers=headers, media_type=media)


def _page(emu: CkanEmulator, path: str) -> Response:
    page = emu.portal.pages.get(path)
    if page is None:
        return Response("not found\n", status_code=404, media_type="text/plain")
    links = "".join(f'<li><a href="{href}">{href.rsplit("/", 1)[-1]}</a></li>' for href in page["links"])
    if page["sub"]:  # a relative link, as pages often have
        rel = page["sub"][len(path.rsplit("/", 1)[0]) + 1:]
        links += f'<li><a href="{rel}">More files</a></li>'
    links += ('<li><a href="https://www.example.org/elsewhere.csv">Mirror elsewhere</a></li>'
              '<li><a href="mailto:data@example.gov">Contact</a></li><li><a href="#top">Top</a></li>')
    html = (f"<!doctype html><html><head><title>{page['title']}</title></head><body>"
            f"<h1>{page['title']}</h1><ul>{links}</ul></body></html>")
    return Response(html, media_type="text/html")


def _data_route(emu: CkanEmulator) -> Any:
    async def data(request: Request) -> Response:
        path = request.url.path
        head, _, rest = path.lstrip("/").partition("/")
        if head == "files":
            return _file(emu, path, request)
        if head in ("slow", "flaky"):
            return _file(emu, "/" + rest, request)
        if head == "redirect":
            return RedirectResponse("/" + rest, status_code=302)
        if head == "pages":
            return _page(emu, path)
        if head == "api":
            return JSONResponse({"dataset": rest, "values": [1, 2, 3]})
        if head in ("arcgis", "wms"):
            return Response("<WMS_Capabilities/>", media_type="application/xml")
        return Response("not found\n", status_code=404, media_type="text/plain")

    return data


def _admin_route(emu: CkanEmulator) -> Any:
    async def advance(request: Request) -> Response:
        doc = await request.json() if await request.body() else {}
        ch = emu.portal.advance(created=int(doc.get("created", 0)), modified=int(doc.get("modified", 0)),
                                removed=int(doc.get("removed", 0)), hours=float(doc.get("hours", 24)))
        return JSONResponse({"created": ch.created, "modified": ch.modified, "removed": ch.removed,
                             "now": emu.portal.now.isoformat(), "count": len(emu.portal.datasets)})

    return advance


DEFAULT_FAULTS = (
    Fault("delay", path="/slow/*", methods=("GET", "HEAD"), times=None, delay_s=0.3),
    Fault("status", path="/flaky/*", methods=("GET", "HEAD"), times=None, probability=0.5, status=503),
)


def create_ckan_app(emulator: CkanEmulator | None = None, *, faults: bool = True, seed: int = 0) -> ASGIApp:
    """The emulator as an ASGI app; ``emulator`` defaults to a 20,000-dataset portal."""
    emu = emulator or CkanEmulator(SyntheticPortal(PortalSpec()))
    app = Starlette(routes=[
        Route("/api/action/{action}", _action_route(emu), methods=["GET", "POST"]),
        Route("/api/3/action/{action}", _action_route(emu), methods=["GET", "POST"]),
        Route("/_ckan/advance", _admin_route(emu), methods=["POST"]),
        Route("/{path:path}", _data_route(emu), methods=["GET", "HEAD"]),
    ])
    app.state.emulator = emu
    return FaultInjector(app, DEFAULT_FAULTS if faults else (), seed=seed)


def serve_ckan(host: str = "127.0.0.1", port: int = 8081, *, datasets: int = 20_000, seed: int = 42,
               latency: Latency | None = None, faults: bool = True, log_level: str = "warning") -> None:
    """Serve an emulated portal in the foreground until interrupted (benchmarks run it in a subprocess)."""
    import uvicorn

    from earthkeep.testbed.runner import tracking_protocol

    emu = CkanEmulator(SyntheticPortal(PortalSpec(datasets=datasets, seed=seed)), latency=latency or Latency())
    config = uvicorn.Config(create_ckan_app(emu, faults=faults), host=host, port=port, http=tracking_protocol(),
                            lifespan="off", log_config=None, log_level=log_level, access_log=False)
    uvicorn.Server(config).run()
