"""Area GeoJSON: accepted shapes, refused ones with their reason, repair only when asked."""

import json

import pytest

from earthkeep.errors import InvalidInput
from earthkeep.nightlights.geometry import Limits, parse_area, parse_features

SQUARE = [[[36.5, -1.5], [37.0, -1.5], [37.0, -1.0], [36.5, -1.0], [36.5, -1.5]]]
BOWTIE = [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]


def poly(coords=SQUARE, **extra):
    return {"type": "Polygon", "coordinates": coords, **extra}


def feature(geometry, **props):
    return {"type": "Feature", "properties": props, "geometry": geometry}


def test_polygon_feature_and_multipolygon_are_accepted():
    a = parse_area(poly())
    assert a.geometry.geom_type == "Polygon" and 3000 < a.area_km2 < 3200
    assert a.vertices == 5 and a.bbox == (36.5, -1.5, 37.0, -1.0) and not a.repaired
    f = parse_area(json.dumps(feature(poly(), name="Nairobi")))
    assert f.name == "Nairobi"
    m = parse_area({"type": "MultiPolygon", "coordinates": [SQUARE, [[[38, 0], [39, 0], [39, 1], [38, 0]]]]})
    assert m.geometry.geom_type == "MultiPolygon"


def test_exterior_rings_come_out_counter_clockwise():
    clockwise = [list(reversed(SQUARE[0]))]
    ring = parse_area(poly(clockwise)).geometry.exterior
    assert ring.is_ccw


def test_feature_collection_is_one_area_or_one_per_feature():
    other = poly([[[38, 0], [39, 0], [39, 1], [38, 0]]])
    fc = {"type": "FeatureCollection", "features": [feature(poly(), name="a"), feature(other, name="b")]}
    union = parse_area(fc)
    assert union.geometry.geom_type == "MultiPolygon"
    each = parse_features(fc)
    assert [p.name for p in each] == ["a", "b"]


def test_self_intersection_is_refused_with_the_reason():
    with pytest.raises(InvalidInput, match=r"invalid: Self-intersection\[0.5 0.5\].*repair"):
        parse_area(poly(BOWTIE))


def test_self_intersection_is_repaired_when_asked():
    a = parse_area(poly(BOWTIE), repair=True)
    assert a.repaired and a.geometry.is_valid and a.geometry.geom_type == "MultiPolygon"
    assert a.area_km2 > 0


def test_invalid_member_of_a_collection_is_named():
    fc = {"type": "FeatureCollection", "features": [feature(poly()), feature(poly(BOWTIE))]}
    with pytest.raises(InvalidInput, match=r"features\[1\]: geometry is invalid: Self-intersection"):
        parse_area(fc)


@pytest.mark.parametrize("obj", [
    poly([]),
    {"type": "MultiPolygon", "coordinates": []},
    {"type": "FeatureCollection", "features": []},
])
def test_empty_geometries_are_refused(obj):
    with pytest.raises(InvalidInput, match=r"empty|no features"):
        parse_area(obj)


def test_enormous_areas_and_too_many_vertices_are_refused():
    huge = poly([[[-60, -40], [60, -40], [60, 40], [-60, 40], [-60, -40]]])
    with pytest.raises(InvalidInput, match=r"area is .* km², more than the limit of 1,000,000 km²"):
        parse_area(huge)
    with pytest.raises(InvalidInput, match=r"5 vertices, more than the limit of 4"):
        parse_area(poly(), limits=Limits(max_vertices=4))
    with pytest.raises(InvalidInput, match=r"more than 180 degrees of longitude"):
        parse_area(poly([[[-179, 0], [179, 0], [179, 1], [-179, 1], [-179, 0]]]),
                   limits=Limits(max_area_km2=1e12))


def test_non_wgs84_crs_member_is_refused_and_crs84_accepted():
    mercator = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3857"}}
    with pytest.raises(InvalidInput, match=r"is not WGS84"):
        parse_area(poly(crs=mercator))
    with pytest.raises(InvalidInput, match=r"is not WGS84"):
        parse_area({**feature(poly()), "crs": {"type": "name", "properties": {"name": "EPSG:32637"}}})
    crs84 = {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}}
    assert parse_area(poly(crs=crs84)).area_km2 > 0


def test_projected_coordinates_are_refused():
    metres = [[[4098000, -166000], [4154000, -166000], [4154000, -110000], [4098000, -166000]]]
    with pytest.raises(InvalidInput, match=r"outside WGS84 longitude/latitude bounds"):
        parse_area(poly(metres))


@pytest.mark.parametrize(("obj", "message"), [
    ({"type": "Point", "coordinates": [1, 2]}, "Point' is not accepted"),
    (feature({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}), "has no area"),
    (feature(None), "has no geometry"),
    (poly([[[0, 0], [1, "x"], [1, 1], [0, 0]]]), "finite numbers"),
    (poly([[[0, 0], [1, 0]]]), "malformed Polygon"),
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be an object"),
])
def test_malformed_geojson_is_refused(obj, message):
    with pytest.raises(InvalidInput, match=message):
        parse_area(obj)
