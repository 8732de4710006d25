"""A STAC API over the catalog: core, collections, OGC API Features, item search, sort, fields, filter.

Errors under ``/stac`` use the STAC API form ``{"code": ..., "description": ...}`` (400 for a bad
parameter, 404 for a missing collection or item); :class:`StacRoute` does that for this router
only, so the rest of the API keeps its own error body.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Body, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session

from earthkeep.api.deps import ReadDep, SessionDep
from earthkeep.api.errors import status_for
from earthkeep.api.stac_params import ITEMS_PARAMS, SearchParams, from_body, from_query
from earthkeep.catalog.cursor import decode_cursor, encode_cursor
from earthkeep.catalog.filters import matcher, queryables
from earthkeep.catalog.items import ItemQuery, collection_extents, count_items, get_item, search_items
from earthkeep.catalog.stac import GEOJSON, STAC_VERSION, collection_to_stac, iso, item_to_stac, select_fields
from earthkeep.errors import EarthkeepError, InvalidInput, NotFound

log = structlog.get_logger(__name__)
#: counts numberMatched of a first page while the page itself is read (PostgreSQL: two connections, two cores)
_COUNTER = ThreadPoolExecutor(max_workers=4, thread_name_prefix="stac-count")

API = "https://api.stacspec.org/v1.0.0"
OGC = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf"
CQL2 = "http://www.opengis.net/spec/cql2/1.0/conf"
QUERYABLES = "http://www.opengis.net/def/rel/ogc/1.0/queryables"
#: Only what is implemented in full (tests/integration/test_stac_api.py checks each).
CONFORMANCE = [
    f"{API}/core", f"{API}/collections", f"{API}/ogcapi-features", f"{API}/item-search",
    f"{API}/item-search#sort", f"{API}/item-search#fields", f"{OGC}/core", f"{OGC}/geojson",
    f"{API}/item-search#filter", "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    f"{CQL2}/cql2-text", f"{CQL2}/cql2-json", f"{CQL2}/basic-cql2",
]
JSON = "application/json"
OPENAPI = "application/vnd.oai.openapi+json;version=3.1"  # FastAPI writes OpenAPI 3.1
CODES = {400: "InvalidParameterValue", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound"}


class GeoJSONResponse(JSONResponse):
    media_type = GEOJSON


def stac_error(status: int, description: str) -> JSONResponse:
    return JSONResponse({"code": CODES.get(status, "ServerError"), "description": description},
                        status_code=status, headers={"WWW-Authenticate": "Bearer"} if status == 401 else None)


def _describe(exc: RequestValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err.get('loc', [])[1:]) or 'body'}: {err.get('msg')}"
                     for err in exc.errors())


class StacRoute(APIRoute):
    """Routes whose errors answer in the STAC API form; a bad parameter is 400, not 422."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return stac_error(400, _describe(exc))
            except OverflowError as exc:  # a number past what the database column holds
                return stac_error(400, f"a number in the request is out of range: {exc}")
            except EarthkeepError as exc:
                status = 400 if isinstance(exc, InvalidInput) else status_for(exc)
                if status >= 500:
                    raise
                log.info("stac.error", path=request.url.path, status=status, error=str(exc))
                return stac_error(status, str(exc))

        return route


router = APIRouter(prefix="/stac", tags=["stac"], route_class=StacRoute)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _link(rel: str, href: str, media: str = JSON, **extra: Any) -> dict[str, Any]:
    return {"rel": rel, "href": href, "type": media, **extra}


@router.get("", summary="STAC landing page")
def landing(request: Request, session: SessionDep, _: ReadDep) -> dict[str, Any]:
    base = _base(request)
    children = [_link("child", f"{base}/stac/collections/{c.name}", title=c.name) for c in collection_extents(session)]
    return {
        "type": "Catalog", "stac_version": STAC_VERSION, "id": "earthkeep", "title": "earthkeep",
        "description": "Environmental data kept by earthkeep.", "conformsTo": CONFORMANCE,
        "links": [
            _link("self", f"{base}/stac"), _link("root", f"{base}/stac"),
            _link("service-desc", f"{base}/stac/api", OPENAPI), _link("service-doc", f"{base}/docs", "text/html"),
            _link("conformance", f"{base}/stac/conformance"), _link("data", f"{base}/stac/collections"),
            _link("search", f"{base}/stac/search", GEOJSON, method="GET"),
            _link("search", f"{base}/stac/search", GEOJSON, method="POST"),
            _link(QUERYABLES, f"{base}/stac/queryables", "application/schema+json"), *children,
        ],
    }


@router.get("/api", include_in_schema=False)
def service_desc(request: Request, _: ReadDep) -> JSONResponse:
    """The API's OpenAPI document (as ``/openapi.json``) under the media type STAC clients ask for."""
    return JSONResponse(request.app.openapi(), media_type=OPENAPI)


@router.get("/queryables", summary="What a search filter can name (JSON Schema)")
def search_queryables(request: Request, _: ReadDep) -> JSONResponse:
    return JSONResponse(queryables(f"{_base(request)}/stac/queryables"), media_type="application/schema+json")


@router.get("/conformance", summary="The conformance classes this API implements")
def conformance(_: ReadDep) -> dict[str, Any]:
    return {"conformsTo": CONFORMANCE}


def _collections(session: Session, base: str, name: str | None = None) -> list[dict[str, Any]]:
    out = []
    for c in collection_extents(session, name):
        extent = {"spatial": {"bbox": [list(c.bbox) if c.bbox else [-180.0, -90.0, 180.0, 90.0]]},
                  "temporal": {"interval": [[iso(c.start), iso(c.end)]]}}
        coll = collection_to_stac(c.name, c.count, extent, base)
        coll["links"].append(_link(QUERYABLES, f"{coll['links'][0]['href']}/queryables", "application/schema+json"))
        out.append(coll)
    return out


@router.get("/collections", summary="STAC collections")
def collections(request: Request, session: SessionDep, _: ReadDep) -> dict[str, Any]:
    base = _base(request)
    return {"collections": _collections(session, base),
            "links": [_link("self", f"{base}/stac/collections"), _link("root", f"{base}/stac"),
                      _link("parent", f"{base}/stac")]}


@router.get("/collections/{name}", summary="One STAC collection")
def collection(name: str, request: Request, session: SessionDep, _: ReadDep) -> dict[str, Any]:
    found = _collections(session, _base(request), name)
    if not found:
        raise NotFound(f"collection: no collection {name!r}")
    return found[0]


def _item_collection(request: Request, session: Session, p: SearchParams,
                     next_link: Callable[[str], dict[str, Any]]) -> GeoJSONResponse:
    base = _base(request)
    test = matcher(p.filter) if p.filter is not None else None
    q = ItemQuery(start=p.start, end=p.end, bbox=p.bbox, limit=p.limit, cursor=p.token, collections=p.collections,
                  ids=p.ids, intersects=p.intersects, sortby=p.sortby,
                  matches=(lambda item: test(item_to_stac(item, base))) if test else None)
    counting: Future[int] | None = None
    try:
        matched = _carried_count(p.token)
        if matched is None and session.get_bind().dialect.name == "postgresql":
            counting = _COUNTER.submit(_count_apart, session.get_bind(), q)  # beside the page, on its own connection
        page = search_items(session, q)
    except InvalidInput as exc:  # the parameters are checked already: what is left is the cursor
        raise InvalidInput(f"token: {exc}") from exc
    features = [select_fields(item_to_stac(i, base), p.fields) for i in page.items]
    if matched is None:
        matched = counting.result() if counting is not None else count_items(session, q)
    links = [_link("self", str(request.url), GEOJSON), _link("root", f"{base}/stac")]
    if page.next_cursor:
        links.append(next_link(encode_cursor({**(decode_cursor(page.next_cursor) or {}), "n": matched})))
    return GeoJSONResponse({"type": "FeatureCollection", "features": features, "links": links,
                            "numberMatched": matched, "numberReturned": len(features)})


def _count_apart(bind: Any, q: ItemQuery) -> int:
    with Session(bind) as s:
        return count_items(s, q)


def _carried_count(token: str | None) -> int | None:
    """``numberMatched`` as the first page counted it, carried in the ``next`` token (one count per search).

    Pages of one search then agree on the total, and only the first page pays for the count.
    """
    n = (decode_cursor(token) or {}).get("n") if token else None
    return n if isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**63 else None


def _get_next(request: Request) -> Callable[[str], dict[str, Any]]:
    return lambda token: _link("next", str(request.url.include_query_params(token=token)), GEOJSON, method="GET")


@router.get("/search", response_class=GeoJSONResponse, summary="Search items (GET)")
def search(request: Request, session: SessionDep, _: ReadDep) -> GeoJSONResponse:
    """Parameters: collections, ids, bbox, intersects, datetime, limit, token, sortby, fields, filter,
    filter-lang, filter-crs."""
    return _item_collection(request, session, from_query(request.query_params), _get_next(request))


@router.post("/search", response_class=GeoJSONResponse, summary="Search items (POST, JSON body)")
def search_post(request: Request, session: SessionDep, _: ReadDep,
                body: Annotated[dict[str, Any], Body()]) -> GeoJSONResponse:
    p = from_body(body)
    href = f"{_base(request)}/stac/search"

    def next_link(token: str) -> dict[str, Any]:
        return _link("next", href, GEOJSON, method="POST", body={**p.raw, "token": token}, merge=False)

    return _item_collection(request, session, p, next_link)


def _require_collection(session: Session, name: str) -> None:
    if not collection_extents(session, name):
        raise NotFound(f"collection: no collection {name!r}")


@router.get("/collections/{name}/queryables", summary="What a search filter can name in a collection")
def collection_queryables(name: str, request: Request, session: SessionDep, _: ReadDep) -> JSONResponse:
    _require_collection(session, name)
    url = f"{_base(request)}/stac/collections/{name}/queryables"
    return JSONResponse(queryables(url), media_type="application/schema+json")


@router.get("/collections/{name}/items", response_class=GeoJSONResponse, summary="Items of a collection")
def collection_items(name: str, request: Request, session: SessionDep, _: ReadDep) -> GeoJSONResponse:
    """Parameters: bbox, datetime, limit, token, sortby, fields."""
    _require_collection(session, name)
    p = from_query(request.query_params, ITEMS_PARAMS)
    p = replace(p, collections=(name,))
    return _item_collection(request, session, p, _get_next(request))


@router.get("/collections/{name}/items/{item_id}", response_class=GeoJSONResponse, summary="One item")
def collection_item(name: str, item_id: str, request: Request, session: SessionDep, _: ReadDep) -> GeoJSONResponse:
    return GeoJSONResponse(item_to_stac(get_item(session, name, item_id), _base(request)))
