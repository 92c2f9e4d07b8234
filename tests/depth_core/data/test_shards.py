import os

import numpy as np
import pytest

from depth_core import atomic_io
from depth_core.data import shards as shards_module
from depth_core.data.shards import (
    ShardError,
    build_sharded,
    is_complete,
    list_shards,
    num_shards,
    read_shard,
    shard_index,
    shard_path,
    write_shard,
)


def _arrays(start: int, count: int) -> dict[str, np.ndarray]:
    ids = np.array([f"s{start + i:04d}" for i in range(count)])
    image = (np.arange(count * 4 * 5 * 3) % 256).astype(np.uint8).reshape(count, 4, 5, 3)
    depth = (
        np.full((count, 4, 5), 1.0, dtype=np.float32)
        + np.arange(start, start + count)[:, None, None]
    )
    return {"id": ids, "image": image, "depth": depth, "mask": depth > 0}


def test_shard_path_layout(tmp_path):
    assert shard_path(tmp_path, 7) == tmp_path / "shards" / "shard-000007.npz"
    assert shard_index(shard_path(tmp_path, 123)) == 123
    with pytest.raises(ValueError):
        shard_path(tmp_path, -1)
    assert num_shards(10, 4) == 3 and num_shards(8, 4) == 2 and num_shards(0, 4) == 0


@pytest.mark.parametrize("compress", [False, True])
def test_write_read_roundtrip_leaves_no_temp(tmp_path, compress):
    path = shard_path(tmp_path, 0)
    arrays = _arrays(0, 3)
    write_shard(path, arrays, compress=compress)
    back = read_shard(path)
    assert set(back) == set(arrays)
    for key in arrays:
        assert back[key].dtype == arrays[key].dtype
        assert np.array_equal(back[key], arrays[key])
    assert read_shard(path, ["id"])["id"].tolist() == ["s0000", "s0001", "s0002"]
    assert sorted(os.listdir(path.parent)) == ["shard-000000.npz"]


def test_write_shard_rejects_inconsistent_arrays(tmp_path):
    with pytest.raises(ShardError, match="first dimension"):
        write_shard(
            shard_path(tmp_path, 0), {"id": np.array(["a", "b"]), "depth": np.zeros((3, 2, 2))}
        )
    assert not shard_path(tmp_path, 0).exists()


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomic_io.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_shard(shard_path(tmp_path, 0), _arrays(0, 2))
    assert os.listdir(tmp_path / "shards") == []


def test_write_failing_midway_keeps_the_complete_shard(tmp_path, monkeypatch):
    path = write_shard(shard_path(tmp_path, 0), _arrays(0, 2))

    def half_written(handle, **arrays):
        handle.write(b"PK\x03\x04 half")
        raise OSError("killed")

    monkeypatch.setattr(shards_module.np, "savez", half_written)
    with pytest.raises(OSError, match="killed"):
        write_shard(path, _arrays(5, 2))
    assert read_shard(path)["id"].tolist() == ["s0000", "s0001"]
    assert os.listdir(tmp_path / "shards") == [path.name]


def test_read_shard_errors_name_the_file(tmp_path):
    path = shard_path(tmp_path, 0)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ShardError, match="shard-000000.npz"):
        read_shard(path)
    write_shard(path, _arrays(0, 2))
    with pytest.raises(ShardError, match="disparity"):
        read_shard(path, ["disparity"])


def test_list_shards_ignores_temp_and_foreign_files(tmp_path):
    for index in (2, 0, 10):
        write_shard(shard_path(tmp_path, index), _arrays(index, 1))
    (tmp_path / "shards" / ".shard-000001.npz.123.abcd.tmp").write_bytes(b"half")
    (tmp_path / "shards" / "notes.txt").write_text("x")
    assert [shard_index(p) for p in list_shards(tmp_path)] == [0, 2, 10]
    assert not is_complete(shard_path(tmp_path, 1))
    assert is_complete(shard_path(tmp_path, 2))
    assert list_shards(tmp_path / "missing") == []


def test_build_resumes_after_crash_without_rewriting(tmp_path):
    calls = []

    def crashing(index, start, count):
        calls.append(index)
        if index == 2:
            raise RuntimeError("killed")
        return _arrays(start, count)

    with pytest.raises(RuntimeError, match="killed"):
        build_sharded(tmp_path, n_items=10, shard_size=3, make_shard=crashing, progress=False)
    assert [shard_index(p) for p in list_shards(tmp_path)] == [0, 1]
    # a process killed during a write leaves a hidden temp file behind
    stray = tmp_path / "shards" / ".shard-000002.npz.999.dead.tmp"
    stray.write_bytes(b"partial bytes")
    mtimes = {p.name: p.stat().st_mtime_ns for p in list_shards(tmp_path)}

    calls.clear()
    stats = build_sharded(
        tmp_path,
        n_items=10,
        shard_size=3,
        make_shard=lambda i, s, c: calls.append(i) or _arrays(s, c),
        progress=False,
    )
    assert calls == [2, 3]
    assert (stats.written, stats.skipped, stats.total, stats.temp_files_removed) == (2, 2, 4, 1)
    assert not stray.exists()
    assert {p.name: p.stat().st_mtime_ns for p in list_shards(tmp_path)[:2]} == mtimes
    ids = np.concatenate([read_shard(p)["id"] for p in list_shards(tmp_path)])
    assert ids.tolist() == [f"s{i:04d}" for i in range(10)]
    assert len(read_shard(shard_path(tmp_path, 3))["id"]) == 1  # last shard is short

    again = build_sharded(
        tmp_path, 10, 3, make_shard=lambda *a: pytest.fail("rewrote a shard"), progress=False
    )
    assert (again.written, again.skipped) == (0, 4)


def test_build_subsets_split_work_and_spare_other_temp_files(tmp_path):
    other = tmp_path / "shards" / ".shard-000001.npz.42.live.tmp"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"another process is writing this")
    first = build_sharded(
        tmp_path, 20, 4, lambda i, s, c: _arrays(s, c), shard_indices=range(0, 5, 2), progress=False
    )
    assert other.exists()  # not ours: shard 1 belongs to the other subset
    second = build_sharded(
        tmp_path, 20, 4, lambda i, s, c: _arrays(s, c), shard_indices=[1, 3], progress=False
    )
    assert (first.written, second.written) == (3, 2)
    assert not other.exists()
    assert [shard_index(p) for p in list_shards(tmp_path)] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="out of range"):
        build_sharded(
            tmp_path, 20, 4, lambda i, s, c: _arrays(s, c), shard_indices=[5], progress=False
        )


def test_build_checks_make_shard_lengths(tmp_path):
    with pytest.raises(ShardError, match="first dimension"):
        build_sharded(tmp_path, 5, 5, lambda i, s, c: _arrays(s, c - 1), progress=False)
    assert list_shards(tmp_path) == []


@pytest.mark.parametrize("damage", ["garbage", "truncated", "flipped_byte"])
def test_a_damaged_shard_is_rebuilt(tmp_path, damage):
    def make(index, start, count):
        return _arrays(start, count)

    build_sharded(tmp_path, 6, 2, make, progress=False)
    path = shard_path(tmp_path, 1)
    good = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"not a zip file")
    elif damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    else:
        middle = len(good) // 2
        path.write_bytes(good[:middle] + bytes([good[middle] ^ 0xFF]) + good[middle + 1 :])
    assert not is_complete(path)
    stats = build_sharded(tmp_path, 6, 2, make, progress=False)
    assert (stats.written, stats.skipped) == (1, 2)
    rebuilt = read_shard(path)
    assert all(np.array_equal(rebuilt[k], v) for k, v in _arrays(2, 2).items())
