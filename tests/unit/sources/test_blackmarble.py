"""The Black Marble source: tile grid, file names, credentials, LAADS month plans (emulator in-process)."""

from datetime import date

import httpx
import pytest
from shapely.geometry import box

from earthkeep.errors import ConfigError, SourceUnavailable, Unauthorized
from earthkeep.nightlights.months import days_of
from earthkeep.nightlights.settings import NightlightsSettings
from earthkeep.sources import blackmarble as bm
from earthkeep.testbed.laads import LaadsArchive


def test_tiles_for_an_area_within_and_across_tiles():
    assert bm.tiles_for(box(36.5, -1.5, 37.0, -1.0)) == [(21, 9)]
    assert bm.tiles_for(box(39.5, -4.5, 40.5, -3.5)) == [(21, 9), (22, 9)]
    assert bm.tiles_for(box(-0.5, 49.5, 0.5, 50.5)) == [(17, 3), (17, 4), (18, 3), (18, 4)]
    # touching a tile edge is not intersecting it
    assert bm.tiles_for(box(30.0, -5.0, 40.0, 0.0)) == [(21, 9)]


def test_granule_names_format_and_parse():
    name = bm.granule_name(date(2024, 2, 1), 21, 9, production="2024040112233")
    assert name == "VNP46A2.A2024032.h21v09.002.2024040112233.h5"
    assert bm.parse_granule_name(name) == {"year": 2024, "doy": 32, "h": 21, "v": 9, "version": "002",
                                           "production": "2024040112233"}
    assert bm.parse_granule_name("VNP46A1.A2024032.h21v09.002.2024040112233.h5") is None


def test_missing_credentials_name_the_variables():
    s = NightlightsSettings(earthdata_token=None, ee_service_account=None, ee_key_file=None)
    with pytest.raises(ConfigError, match=r"^EARTHDATA_TOKEN is not set"):
        bm.earthdata_token(s)
    with pytest.raises(ConfigError, match=r"EARTHENGINE_SERVICE_ACCOUNT and EARTHENGINE_KEY_FILE are not set"):
        bm.earth_engine_credentials(s)
    with pytest.raises(ConfigError, match=r"^EARTHENGINE_KEY_FILE is not set"):
        bm.earth_engine_credentials(NightlightsSettings(ee_service_account="a@b", ee_key_file=None))


@pytest.fixture
def archive(tmp_path):
    return LaadsArchive(tmp_path / "laads", token="good-token", tile_size=24)


def _settings(token="good-token"):
    return NightlightsSettings(earthdata_token=token, laads_url="http://laads.test")


def _client(archive):
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=archive.app()))


async def test_plan_lists_the_month_and_keeps_only_the_needed_tiles(archive):
    archive.missing_days = {"2023-02-03"}
    async with _client(archive) as client:
        plan = await bm.plan_laads_month(_settings(), box(36.5, -1.5, 37.0, -1.0), days_of("2023-02"),
                                         client=client)
    assert plan.tiles == [(21, 9)] and plan.missing == ["2023-02-03"]
    assert len(plan.granules) == 27 and all(g.tile == (21, 9) for g in plan.granules)
    g = plan.granules[0]
    assert g.url == ("http://laads.test/archive/allData/5200/VNP46A2/2023/032/"
                     "VNP46A2.A2023032.h21v09.002.2024060101010.h5")
    assert g.key == "nightlights/raw/VNP46A2/5200/2023/032/VNP46A2.A2023032.h21v09.002.2024060101010.h5"
    assert g.size == (archive.day_dir(date(2023, 2, 1)) / g.name).stat().st_size
    req = plan.requests("good-token")[0]
    assert req.headers == {"Authorization": "Bearer good-token"} and req.size == g.size
    assert all(path.endswith(".json") for _, path, _ in archive.requests)  # listing only, no download


async def test_a_refused_token_is_unauthorized(archive):
    async with _client(archive) as client:
        with pytest.raises(Unauthorized, match=r"LAADS refused the Earthdata token .*401"):
            await bm.plan_laads_month(_settings("wrong"), box(36.5, -1.5, 37.0, -1.0), days_of("2023-02"),
                                      client=client)


async def test_an_unreachable_archive_is_retryable():
    async with httpx.AsyncClient() as client:
        s = NightlightsSettings(earthdata_token="t", laads_url="http://127.0.0.1:9")
        with pytest.raises(SourceUnavailable, match=r"LAADS listing"):
            await bm.plan_laads_month(s, box(36.5, -1.5, 37.0, -1.0), days_of("2023-02")[:1], client=client)


# ------------------------------------------------------------- the provider as data


def test_the_tile_grid_starts_at_the_north_west_corner_in_ten_degree_steps():
    assert bm.tile_box(0, 0).bounds == (-180.0, 80.0, -170.0, 90.0)
    assert bm.tile_box(35, 17).bounds == (170.0, -90.0, 180.0, -80.0)
    assert bm.tile_box(21, 9).bounds == (30.0, -10.0, 40.0, 0.0)


def test_an_area_covering_the_world_needs_every_tile_once():
    tiles = bm.tiles_for(box(-180, -90, 180, 90))
    assert len(tiles) == bm.H_TILES * bm.V_TILES == 648
    assert tiles[0] == (0, 0) and tiles[-1] == (35, 17) and len(set(tiles)) == 648


@pytest.mark.parametrize(
    ("day", "doy"),
    [(date(2024, 1, 1), 1), (date(2023, 12, 31), 365), (date(2024, 12, 31), 366), (date(2024, 3, 1), 61)],
)
def test_names_carry_the_day_of_year_and_parse_back(day, doy):
    name = bm.granule_name(day, 3, 17, version="001", production="2025001000000")
    assert name == f"VNP46A2.A{day.year}{doy:03d}.h03v17.001.2025001000000.h5"
    assert bm.parse_granule_name(name) == {"year": day.year, "doy": doy, "h": 3, "v": 17, "version": "001",
                                           "production": "2025001000000"}


@pytest.mark.parametrize("name", [
    "VNP46A2.A2024032.h21v09.002.2024040112233.h5.tmp",
    "VNP46A2.A2024032.h21v9.002.2024040112233.h5",
    "VNP46A2.A2024032.h21v09.002.202404011223.h5",
    "../VNP46A2.A2024032.h21v09.002.2024040112233.h5",
])
def test_names_that_are_not_vnp46a2_tiles_do_not_parse(name):
    assert bm.parse_granule_name(name) is None


def test_laads_paths_follow_the_archive_tree():
    fmt = {"collection": "5200", "product": bm.PRODUCT, "year": 2024, "doy": 5}
    assert bm.LAADS.day_dir.format(**fmt) == "/archive/allData/5200/VNP46A2/2024/005"
    assert bm.LAADS.listing.format(**fmt) == "/archive/allData/5200/VNP46A2/2024/005.json"
    assert bm.LAADS.file.format(**fmt, name="x.h5") == "/archive/allData/5200/VNP46A2/2024/005/x.h5"
    assert bm.LAADS.versions == {"5200": "002", "5000": "001"}


def test_a_month_plan_asks_for_each_granule_with_the_bearer_token():
    g = bm.Granule("n.h5", "nightlights/raw/n.h5", "http://127.0.0.1:9/n.h5", date(2024, 1, 1), (21, 9), 10)
    [req] = bm.MonthPlan(tiles=[(21, 9)], granules=[g]).requests("tok")
    assert (req.url, req.key, req.size, req.content_type) == (g.url, g.key, 10, "application/x-hdf5")
    assert dict(req.headers) == {"Authorization": "Bearer tok"}
