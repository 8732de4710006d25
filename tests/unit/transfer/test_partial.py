"""The partial file: a fresh one is not a resume; a left-over one with another identity starts empty."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from structlog.testing import capture_logs

from earthkeep.transfer.partial import SIDECAR_VERSION, PartialFile


def _open(work_dir: Path, identity: dict[str, str]) -> PartialFile:
    return asyncio.run(PartialFile.open(work_dir, "x", identity))


def test_fresh_partial_file_is_not_a_resume(tmp_path: Path) -> None:
    with capture_logs() as logs:
        partial = _open(tmp_path, {"url": "u"})
    asyncio.run(partial.close(save=False))
    assert partial.resumed == 0 and partial.coverage.total() == 0
    assert not [e for e in logs if e["event"] == "transfer.resume"]


def test_left_over_bytes_of_another_remote_are_dropped(tmp_path: Path) -> None:
    (tmp_path / "x.part").write_bytes(b"old bytes")
    doc = {"version": SIDECAR_VERSION, "identity": {"url": "other"}, "done": [[0, 9]]}
    (tmp_path / "x.part.json").write_text(json.dumps(doc))
    partial = _open(tmp_path, {"url": "u"})
    asyncio.run(partial.close(save=False))
    assert partial.resumed == 0 and (tmp_path / "x.part").stat().st_size == 0


def test_left_over_bytes_of_the_same_remote_are_kept(tmp_path: Path) -> None:
    (tmp_path / "x.part").write_bytes(b"old bytes")
    doc = {"version": SIDECAR_VERSION, "identity": {"url": "u"}, "done": [[0, 9]]}
    (tmp_path / "x.part.json").write_text(json.dumps(doc))
    with capture_logs() as logs:
        partial = _open(tmp_path, {"url": "u"})
    asyncio.run(partial.close(save=False))
    assert partial.resumed == 9 and (tmp_path / "x.part").read_bytes() == b"old bytes"
    assert [e["bytes_on_disk"] for e in logs if e["event"] == "transfer.resume"] == [9]
