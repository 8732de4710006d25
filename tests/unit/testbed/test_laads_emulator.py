"""The LAADS emulator's extensions: the file search blackmarblepy reads, the collection-2 grid group."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import h5py
from starlette.testclient import TestClient

from earthkeep.raster.blackmarble import open_granules
from earthkeep.testbed.laads import GROUP_C2, LaadsArchive


def test_details_lists_every_tile_of_every_day_with_a_download_link(tmp_path: Path) -> None:
    archive = LaadsArchive(tmp_path, token="t", tiles=((21, 8), (21, 9)), tile_size=24, missing_days={"2023-01-02"})
    client = TestClient(archive.app())
    answer = client.get(
        "/api/v2/content/details",
        params={
            "products": "VNP46A2",
            "archiveSet": "5200",
            "temporalRanges": "2023-01-01..2023-01-03",
            "regions": "[BBOX]W34 N4 E41 S-4",
            "page": 1,
        },
    )
    assert answer.status_code == 200 and answer.json()["n_pages"] == 1
    content = answer.json()["content"]
    assert len(content) == 2 * 3  # two tiles and the decoy, on two of the three days
    assert {c["start"][:10] for c in content} == {"2023-01-01", "2023-01-03"}
    first = content[0]
    assert first["downloadsLink"].startswith("http://testserver/archive/allData/5200/VNP46A2/2023/001/")
    path = first["downloadsLink"].removeprefix("http://testserver")
    assert client.get(path).status_code == 401  # the files still want the token
    got = client.get(path, headers={"Authorization": "Bearer t"})
    assert got.status_code == 200 and len(got.content) == first["size"]
    other = client.get(
        "/api/v2/content/details", params={"products": "VNP46A1", "temporalRanges": "2023-01-01..2023-01-01"}
    )
    assert other.json()["content"] == []


def test_collection_2_group_and_string_tile_numbers_read_back(tmp_path: Path) -> None:
    archive = LaadsArchive(tmp_path, token="t", tile_size=24, grid_group=GROUP_C2)
    path = archive.materialise(date(2023, 1, 5))[0]
    with h5py.File(path) as f:
        assert GROUP_C2 in f
        assert f.attrs["HorizontalTileNumber"].decode() == "21" and f.attrs["VerticalTileNumber"].decode() == "09"
    with open_granules([(path, path.name)]) as [granule]:
        assert granule.grid.west == 30.0 and granule.grid.width == 24
