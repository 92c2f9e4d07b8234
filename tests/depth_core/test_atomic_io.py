"""The one atomic writer: publish on success, leave the old file and no temp file on failure."""

import json
import math
import threading
from pathlib import Path

import numpy as np
import pytest

from depth_core import atomic_io
from depth_core.atomic_io import (
    atomic_directory,
    atomic_path,
    atomic_write,
    json_safe,
    json_text,
    replaced_directory,
    write_json,
)


def _strict_json(text: str):
    """Parse like a browser or DVC would: NaN / Infinity tokens are errors."""

    def reject(token):
        raise AssertionError(f"{token} in JSON")

    return json.loads(text, parse_constant=reject)


def test_writes_text_and_bytes(tmp_path):
    assert atomic_write(tmp_path / "a" / "x.txt", "héllo").read_text() == "héllo"
    assert atomic_write(tmp_path / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"


def test_temp_file_is_a_hidden_sibling_and_gone_after_success(tmp_path):
    target = tmp_path / "out.bin"
    with atomic_path(target) as temp:
        assert temp.parent == tmp_path and temp.name.startswith(".out.bin.")
        assert temp.name.endswith(atomic_io.TEMP_SUFFIX) and temp.exists()
        temp.write_bytes(b"new")
        assert not target.exists()  # nothing is published before the block ends
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_an_error_midway_removes_the_temp_file_and_keeps_the_old_content(tmp_path):
    target = atomic_write(tmp_path / "x.json", "old")
    with pytest.raises(RuntimeError, match="killed"), atomic_path(target) as temp:
        temp.write_text("half of the new cont")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_a_failed_rename_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = atomic_write(tmp_path / "x.json", "old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomic_io.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, "new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_two_writers_of_one_file_never_share_a_temp_file(tmp_path):
    target = tmp_path / "shared.txt"
    with atomic_path(target) as first, atomic_path(target) as second:
        assert first != second
        first.write_text("first")
        second.write_text("second")
    assert target.read_text() == "first"  # the outer block is published last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared.txt"]


def test_concurrent_writers_each_publish_a_complete_file(tmp_path):
    target = tmp_path / "race.txt"
    payloads = {str(i): str(i) * 50_000 for i in range(8)}
    errors = []

    def write(payload):
        try:
            for _ in range(5):
                atomic_write(target, payload)
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(p,)) for p in payloads.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert target.read_text() in payloads.values()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["race.txt"]


def test_published_file_has_the_mode_of_a_plain_open(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert atomic_write(tmp_path / "atomic.txt", "x").stat().st_mode == plain.stat().st_mode


def test_atomic_directory_publishes_whole_or_not_at_all(tmp_path):
    target = tmp_path / "model"
    with pytest.raises(RuntimeError), atomic_directory(target) as temp:
        (temp / "a.txt").write_text("a")
        raise RuntimeError("copy failed")
    assert list(tmp_path.iterdir()) == []
    with atomic_directory(target) as temp:
        (temp / "a.txt").write_text("a")
    assert (target / "a.txt").read_text() == "a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_replaced_directory_swaps_whole_or_keeps_the_old_one(tmp_path):
    target = tmp_path / "report"
    with replaced_directory(target) as temp:  # nothing there yet
        (temp / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), replaced_directory(target) as temp:
        (temp / "new.txt").write_text("new")
        raise RuntimeError("report failed")
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]
    with replaced_directory(target) as temp:
        (temp / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_nan_and_infinities_become_null(tmp_path):
    data = {
        "loss": math.nan,
        "rows": [{"x": math.inf}, (-math.inf, 1.5)],
        "np": np.float32("nan"),
        "arr": np.array([1.0, np.nan]),
        "ok": 2,
    }
    path = write_json(tmp_path / "m.json", data)
    assert _strict_json(path.read_text()) == {
        "loss": None,
        "rows": [{"x": None}, [None, 1.5]],
        "np": None,
        "arr": [1.0, None],
        "ok": 2,
    }
    assert path.read_text().endswith("}\n")


def test_json_safe_converts_numpy_paths_and_keys():
    assert json_safe({1: np.int64(3), "p": Path("a/b"), "b": np.bool_(True)}) == {
        "1": 3,
        "p": "a/b",
        "b": True,
    }
    assert json_text({"b": 1, "a": 2}, indent=None, sort_keys=True) == '{"a": 2, "b": 1}'


def test_unserialisable_json_names_the_file_and_writes_nothing(tmp_path):
    with pytest.raises(TypeError, match="bad.json"):
        write_json(tmp_path / "bad.json", {"x": object()})
    assert list(tmp_path.iterdir()) == []
