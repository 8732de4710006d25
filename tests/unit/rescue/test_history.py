"""What changed between two versions of a dataset."""

from earthkeep.rescue.history import diff

OLD = {"id": "d", "title": "Sea level", "notes": "n", "metadata_modified": "2024-01-01T00:00:00",
       "tags": [{"name": "ocean"}, {"name": "climate"}],
       "resources": [{"id": "r1", "url": "https://h/a.csv", "format": "CSV"}, {"id": "r2", "url": "https://h/b"}],
       "tracking_summary": {"total": 1}}


def test_no_change_when_only_volatile_fields_move():
    new = {**OLD, "metadata_modified": "2024-02-01T00:00:00", "tracking_summary": {"total": 9}}
    assert diff(OLD, new) == {}


def test_fields_tags_and_resources():
    new = {**OLD, "title": "Sea level (revised)", "tags": [{"name": "ocean"}, {"name": "revised"}],
           "resources": [{"id": "r1", "url": "https://h/a2.csv", "format": "CSV"}, {"id": "r3", "url": "https://h/c"}]}
    d = diff(OLD, new)
    assert d["title"] == {"old": "Sea level", "new": "Sea level (revised)"}
    assert d["tags"] == {"added": ["revised"], "removed": ["climate"]}
    assert d["resources"] == {"added": ["r3"], "removed": ["r2"], "changed": {"r1": ["url"]}}


def test_long_text_is_shortened_with_its_hash():
    new = {**OLD, "notes": "x" * 5000}
    d = diff(OLD, new)
    assert d["notes"]["new"]["length"] == 5000 and len(d["notes"]["new"]["sha256"]) == 64
