"""BagIt bags written through the store are valid per the bagit reference implementation."""

import hashlib

import bagit

from earthkeep.rescue.bags import BagWriter, bag_name
from earthkeep.store.obstore import ObstoreStore

META = {"id": "d-1", "name": "sea-level", "title": "Sea level", "organization": {"name": "noaa-gov", "title": "NOAA"}}


async def test_a_bag_grows_and_stays_valid(tmp_path):
    store = ObstoreStore.local(tmp_path)
    bags = BagWriter(store, "bags")
    files = {"a.csv": b"x,y\n1,2\n", "b.nc": b"\x89HDF" * 100}
    for name, data in files.items():
        await store.put(bags.payload_key("sea-level", name), data)
        await bags.add("sea-level", name, hashlib.sha256(data).hexdigest(), metadata=META,
                       headers={"content-type": "text/csv", "etag": '"1"'})
        bag = bagit.Bag(str(tmp_path / "bags" / "sea-level"))
        bag.validate()
    assert bag.info["Payload-Oxum"] == f"{sum(map(len, files.values()))}.2"
    assert bag.info["External-Identifier"] == "d-1" and bag.info["Source-Organization"] == "NOAA"
    assert (tmp_path / "bags/sea-level/metadata/ckan.json").read_text().count("sea-level") >= 1
    assert (tmp_path / "bags/sea-level/metadata/headers/b.nc.json").exists()


async def test_a_tampered_payload_fails_validation(tmp_path):
    store = ObstoreStore.local(tmp_path)
    bags = BagWriter(store, "")
    await store.put(bags.payload_key("d", "f.txt"), b"good")
    await bags.add("d", "f.txt", hashlib.sha256(b"good").hexdigest(), metadata=META, headers={})
    (tmp_path / "d/data/f.txt").write_bytes(b"evil")
    bag = bagit.Bag(str(tmp_path / "d"))
    try:
        bag.validate()
    except bagit.BagValidationError as exc:
        assert "f.txt" in str(exc)
    else:
        raise AssertionError("a changed payload must not validate")


def test_bag_names_are_safe():
    assert bag_name("../../etc") == "etc"
    assert bag_name("a b/c") == "a_b_c"
    assert bag_name("..") == "dataset"
