import pytest

from depth_core import atomic_io
from depth_core.atomic_io import atomic_write


def test_writes_text_and_bytes(tmp_path):
    assert atomic_write(tmp_path / "a" / "x.txt", "héllo").read_text() == "héllo"
    assert atomic_write(tmp_path / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"


def test_a_failed_write_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = atomic_write(tmp_path / "x.json", "old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomic_io.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, "new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]
