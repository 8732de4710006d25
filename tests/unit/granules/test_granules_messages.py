"""File messages keep the README's contract: keys, values, and what the example subscriber prints."""

from __future__ import annotations

import json

from posttroll.message import Message

from earthkeep.granules.messages import FILE_KEYS, encode, file_data, granule_uri, to_json, to_wire
from earthkeep.sources.gina import parse_sdr_name
from earthkeep.store.obstore import ObstoreStore

README = "SVM16_npp_d20190422_t1828348_e1829590_b38780_c20190422183926285541_cspp_dev.h5"
README_OUTPUT = """{
    "end_time": "2019-04-22 18:29:59",
    "orbit_number": 38780,
    "orig_platform_name": "npp",
    "platform_name": "Suomi-NPP",
    "proctime": "2019-04-22 18:39:26.285541",
    "segment": "SVM16",
    "sensor": [
        "viirs"
    ],
    "start_time": "2019-04-22 18:28:34.800000",
    "uid": "SVM16_npp_d20190422_t1828348_e1829590_b38780_c20190422183926285541_cspp_dev.h5",
    "uri": "/viirs/sdr/SVM16_npp_d20190422_t1828348_e1829590_b38780_c20190422183926285541_cspp_dev.h5"
}"""


def test_decoded_message_prints_exactly_like_the_readme():
    data = file_data(parse_sdr_name(README), README, granule_uri(None, "k", README, "/viirs/sdr"))  # type: ignore[arg-type]
    raw = encode("/AVO/viirs/sdr", "file", data)
    assert raw.startswith("pytroll://AVO/viirs/sdr file ")
    msg = Message.decode(raw.encode())
    assert sorted(msg.data) == sorted(FILE_KEYS)
    assert json.dumps(msg.data, sort_keys=True, indent=4, default=str) == README_OUTPUT


def test_json_and_wire_forms_round_trip():
    data = file_data(parse_sdr_name(README), README, "/x")
    assert to_json(to_wire(data)) == data


def test_uri_of_a_local_store_is_its_path(tmp_path):
    store = ObstoreStore.local(tmp_path / "s")
    uri = granule_uri(store, "viirs/sdr/2019/04/22/" + README, README)
    assert uri == f"{(tmp_path / 's').resolve()}/viirs/sdr/2019/04/22/{README}"


def test_uri_of_an_s3_store_has_no_credentials():
    store = ObstoreStore.s3("bucket", "http://127.0.0.1:9", "AKIAKEY", "SECRET")
    uri = granule_uri(store, "viirs/sdr/" + README, README)
    assert uri == f"http://127.0.0.1:9/bucket/viirs/sdr/{README}"
    assert "SECRET" not in uri and "AKIAKEY" not in uri
