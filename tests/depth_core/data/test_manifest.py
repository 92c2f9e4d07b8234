import json

import numpy as np
import pytest

from depth_core.data.manifest import (
    build_manifest,
    dataset_kind,
    finalize_dataset,
    is_dataset_complete,
    read_manifest,
    read_summary,
    write_dataset_metadata,
)
from depth_core.data.shards import shard_path, write_shard


def _labeled(tmp_path):
    depth = np.zeros((2, 2, 3), dtype=np.float32)
    depth[0] = [[1.0, 2.0, 4.0], [0.0, 0.0, 0.0]]
    depth[1] = [[np.nan, 0.0, 3.0], [3.0, 9.0, 0.0]]
    mask = np.isfinite(depth) & (depth > 0)
    mask[1, 1, 1] = False  # 9.0 is masked out: statistics must ignore it
    image = np.zeros((2, 2, 3, 3), dtype=np.uint8)
    write_shard(
        shard_path(tmp_path, 0),
        {
            "id": np.array(["a", "b"]),
            "image": image,
            "depth": depth,
            "mask": mask,
            "source": np.array(["x/a.png", "x/b.png"]),
        },
    )
    write_shard(
        shard_path(tmp_path, 1),
        {"id": np.array(["c"]), "image": image[:1], "depth": depth[:1], "mask": mask[:1]},
    )


def test_manifest_rows_and_statistics(tmp_path):
    _labeled(tmp_path)
    frame = build_manifest(tmp_path, default_source="synthetic")
    assert frame["id"].tolist() == ["a", "b", "c"]
    assert frame["shard"].tolist() == [0, 0, 1] and frame["index"].tolist() == [0, 1, 0]
    assert frame["source"].tolist() == ["x/a.png", "x/b.png", "synthetic"]
    assert frame["height"].tolist() == [2, 2, 2] and frame["width"].tolist() == [3, 3, 3]
    assert frame["depth_min"].tolist() == [1.0, 3.0, 1.0]
    assert frame["depth_median"].tolist() == [2.0, 3.0, 2.0]
    assert frame["depth_max"].tolist() == [4.0, 3.0, 4.0]
    np.testing.assert_allclose(frame["valid_fraction"], [0.5, 2 / 6, 0.5])
    assert read_manifest(tmp_path).equals(frame)


def test_finalize_writes_summary_last_and_marks_complete(tmp_path):
    _labeled(tmp_path)
    assert not is_dataset_complete(tmp_path)
    summary = finalize_dataset(
        tmp_path, parameters={"seed": 3}, skipped=[{"file": "z.png", "reason": "corrupt"}]
    )
    assert is_dataset_complete(tmp_path)
    on_disk = read_summary(tmp_path)
    assert on_disk == json.loads(json.dumps(summary))
    assert on_disk["kind"] == "labeled" and on_disk["n_samples"] == 3 and on_disk["n_shards"] == 2
    assert on_disk["n_skipped"] == 1 and on_disk["skipped"][0]["reason"] == "corrupt"
    assert on_disk["parameters"] == {"seed": 3} and on_disk["height"] == 2 and on_disk["width"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "manifest.parquet",
        "shards",
        "summary.json",
    ]


def test_pseudo_manifest_uses_disparity(tmp_path):
    # NaN and negative labels are invalid; zero is the teacher's "farthest" and counts.
    disparity = np.array([[[0.5, np.nan], [2.0, 0.0], [-1.0, 1.0]]], dtype=np.float16)
    write_shard(shard_path(tmp_path, 0), {"id": np.array(["u0"]), "disparity": disparity})
    frame = build_manifest(tmp_path)
    assert frame["disparity_min"].tolist() == [0.0] and frame["disparity_max"].tolist() == [2.0]
    assert frame["valid_fraction"].tolist() == [4 / 6]


def test_duplicate_ids_and_missing_files_are_errors(tmp_path):
    image = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    write_shard(shard_path(tmp_path, 0), {"id": np.array(["a"]), "image": image})
    write_shard(shard_path(tmp_path, 1), {"id": np.array(["a"]), "image": image})
    with pytest.raises(ValueError, match="duplicate sample ids"):
        build_manifest(tmp_path)
    with pytest.raises(FileNotFoundError, match="manifest"):
        read_manifest(tmp_path)
    with pytest.raises(FileNotFoundError, match="summary"):
        read_summary(tmp_path)
    with pytest.raises(FileNotFoundError, match="no shards"):
        build_manifest(tmp_path / "empty")


def test_dataset_kind():
    assert dataset_kind(["id", "image", "depth", "mask"]) == "labeled"
    assert dataset_kind(["id", "image"]) == "unlabeled"
    assert dataset_kind(["id", "disparity"]) == "pseudo"
    with pytest.raises(ValueError):
        dataset_kind(["id"])


def test_write_dataset_metadata_is_finalize_with_params(tmp_path):
    _labeled(tmp_path)
    summary = write_dataset_metadata(tmp_path, params={"seed": 1}, extra={"domain": "synthetic"})
    assert read_summary(tmp_path) == summary
    assert summary["parameters"] == {"seed": 1} and summary["domain"] == "synthetic"
