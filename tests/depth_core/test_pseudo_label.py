"""Pseudo-labelling: one float16 shard per unlabeled shard, resumable, split by whole shards
across ranks, checked before the dataset is sealed, flip TTA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from depth_core.data.dataset import PseudoLabelDataset
from depth_core.data.manifest import finalize_dataset, is_dataset_complete, read_summary
from depth_core.data.shards import list_shards, read_shard, shard_path, write_shard
from depth_core.inference import predict_disparity
from depth_core.models import ModelConfig, build_model, save_checkpoint
from depth_core.pseudo_label import (
    LABEL_PEAK,
    PseudoLabelError,
    finish_pseudo_labels,
    generate_pseudo_labels,
    label_shards,
    rank_shards,
    to_float16_labels,
)
from tests.helpers import TINY_VIT


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("pseudo")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    unlabeled = root / "unlabeled"
    for k, start in enumerate(range(0, 10, 4)):
        write_shard(
            shard_path(unlabeled, k),
            {
                "id": np.array([f"u{i}" for i in range(start, min(10, start + 4))]),
                "image": images[start : start + 4],
            },
        )
    finalize_dataset(unlabeled)
    torch.manual_seed(0)
    model = build_model(ModelConfig(**TINY_VIT))
    checkpoint = save_checkpoint(root / "teacher.safetensors", model)
    return {
        "root": root,
        "unlabeled": unlabeled,
        "checkpoint": checkpoint,
        "images": images,
        "model": model,
    }


def _unit_peak(disparity: np.ndarray) -> np.ndarray:
    """Each map over its maximum: stored labels divided by LABEL_PEAK (lossless for
    affine-invariant targets)."""
    return disparity / disparity.reshape(len(disparity), -1).max(axis=1)[:, None, None]


def _run(setup, out, **kwargs):
    values = {"batch_size": 3, "device": "cpu", "amp": "fp32", "flip_tta": False, "progress": False}
    values.update(kwargs)
    return generate_pseudo_labels(setup["checkpoint"], setup["unlabeled"], out, **values)


def _label(setup, out, rank=0, world_size=1, **kwargs):
    """One rank's part only (nothing sealed): rank 0 of 3 labels shard 0 of the 3 shards."""
    values = {"batch_size": 3, "device": "cpu", "amp": "fp32", "flip_tta": False, "progress": False}
    values.update(kwargs)
    return label_shards(
        setup["checkpoint"], setup["unlabeled"], out, rank=rank, world_size=world_size, **values
    )


def test_one_float16_shard_per_unlabeled_shard(setup, tmp_path):
    stats = _run(setup, tmp_path / "p")
    assert stats["n_images"] == 10 and stats["n_shards_written"] == 3 and stats["nan_count"] == 0
    assert stats["complete"] == 1 and stats["images_per_second"] > 0
    shards = list_shards(tmp_path / "p")
    assert [p.name for p in shards] == ["shard-000000.npz", "shard-000001.npz", "shard-000002.npz"]
    labels = [read_shard(p) for p in shards]
    assert all(set(x) == {"id", "disparity"} and x["disparity"].dtype == np.float16 for x in labels)
    ids = np.concatenate([x["id"] for x in labels])
    assert list(ids) == [f"u{i}" for i in range(10)]
    disparity = np.concatenate([x["disparity"] for x in labels]).astype(np.float32)
    expected = np.stack(predict_disparity(setup["model"], list(setup["images"]), batch_size=4))
    np.testing.assert_allclose(disparity / LABEL_PEAK, _unit_peak(expected), rtol=2e-3, atol=1e-3)
    stream = PseudoLabelDataset(setup["unlabeled"], tmp_path / "p", shuffle=False)
    first = next(iter(stream))
    assert first["pseudo"] and first["id"] == "u0" and first["disparity"].shape == (32, 32)


def test_rerun_skips_done_shards_and_redoes_missing_ones(setup, tmp_path):
    out = tmp_path / "p"
    _run(setup, out)
    again = _run(setup, out)
    assert (
        again["n_shards_written"] == 0 and again["n_shards_skipped"] == 3 and again["n_images"] == 0
    )
    shard_path(out, 1).unlink()
    (out / "shards" / ".shard-000001.npz.123.dead.tmp").write_bytes(b"half a shard")
    redo = _run(setup, out)
    assert redo["n_shards_written"] == 1 and redo["n_images"] == 4
    assert not list((out / "shards").glob(".*tmp"))
    # a shard that labels other images (the unlabeled set changed) is redone as well
    write_shard(
        shard_path(out, 2),
        {"id": np.array(["x", "y"]), "disparity": np.zeros((2, 32, 32), np.float16)},
    )
    assert _run(setup, out)["n_shards_written"] == 1
    assert list(read_shard(shard_path(out, 2))["id"]) == ["u8", "u9"]


def test_ranks_label_whole_disjoint_shards_and_the_finish_checks_them(setup, tmp_path):
    out = tmp_path / "p"
    first = _label(setup, out, rank=0, world_size=2)  # shards 0 and 2
    assert first["n_shards_written"] == 2 and not is_dataset_complete(out)
    with pytest.raises(PseudoLabelError, match="shard 1 .*no pseudo-labels"):
        finish_pseudo_labels(setup["unlabeled"], out, {})
    assert not is_dataset_complete(out), "summary.json before every shard is there"
    second = _label(setup, out, rank=1, world_size=2)
    assert second["n_shards_written"] == 1
    finish_pseudo_labels(setup["unlabeled"], out, {"k": 1})
    assert is_dataset_complete(out) and read_summary(out)["parameters"] == {"k": 1}
    reference = tmp_path / "one"
    _run(setup, reference)
    for index in range(3):
        assert shard_path(out, index).read_bytes() == shard_path(reference, index).read_bytes()
    with pytest.raises(ValueError, match="rank 2"):
        rank_shards([], 2, 2)


def test_a_finished_labelling_of_other_images_is_not_sealed(setup, tmp_path):
    out = tmp_path / "p"
    _run(setup, out)
    write_shard(
        shard_path(out, 1),
        {"id": np.array(["x"]), "disparity": np.zeros((1, 32, 32), np.float16)},
    )
    with pytest.raises(PseudoLabelError, match="shard 1 .*labels other images"):
        finish_pseudo_labels(setup["unlabeled"], out, {})


def test_a_failing_shard_is_named(setup, tmp_path, monkeypatch):
    from depth_core import pseudo_label

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(pseudo_label, "label_images", broken)
    with pytest.raises(PseudoLabelError, match=r"shard 0 \(.*shard-000000.npz\): out of memory"):
        _label(setup, tmp_path / "p")


def test_flip_tta_averages_the_mirrored_prediction(setup, tmp_path):
    _label(setup, tmp_path / "tta", world_size=3, flip_tta=True)
    got = read_shard(shard_path(tmp_path / "tta", 0))["disparity"].astype(np.float32)
    model, images = setup["model"], setup["images"][:4]
    with torch.inference_mode():
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
        expected = 0.5 * (model(x) + model(x.flip(-1)).flip(-1))
    np.testing.assert_allclose(got / LABEL_PEAK, _unit_peak(expected.numpy()), rtol=2e-3, atol=1e-3)
    plain = read_shard(shard_path(_run_dir(setup, tmp_path), 0))["disparity"].astype(np.float32)
    assert np.abs(got - plain).max() > 1e-3


def test_multi_scale_labels_are_recorded_and_differ_from_one_scale(setup, tmp_path):
    out = tmp_path / "ms"
    stats = _run(setup, out, scales=[0.5, 1.0])
    assert stats["complete"] == 1.0
    assert read_summary(out)["parameters"]["scales"] == [0.5, 1.0]
    got = read_shard(shard_path(out, 0))["disparity"].astype(np.float32)
    plain = read_shard(shard_path(_run_dir(setup, tmp_path), 0))["disparity"].astype(np.float32)
    assert np.isfinite(got).all() and got.shape == plain.shape
    assert np.abs(got - plain).max() > 1e-3


def _run_dir(setup, tmp_path):
    out = tmp_path / "plain"
    _label(setup, out, world_size=3)
    return out


def test_bf16_labels_close_to_fp32(setup, tmp_path):
    _label(setup, tmp_path / "fp32", world_size=3)
    stats = _label(setup, tmp_path / "bf16", world_size=3, amp="bf16")
    assert stats["bf16"] == 1.0
    a = read_shard(shard_path(tmp_path / "fp32", 0))["disparity"].astype(np.float32)
    b = read_shard(shard_path(tmp_path / "bf16", 0))["disparity"].astype(np.float32)
    assert np.abs(a - b).max() < 0.05 * np.abs(a).max()


def test_incomplete_unlabeled_set_is_refused(setup, tmp_path):
    write_shard(
        shard_path(tmp_path / "raw", 0),
        {"id": np.array(["a"]), "image": np.zeros((1, 8, 8, 3), np.uint8)},
    )
    with pytest.raises(FileNotFoundError, match="summary.json"):
        generate_pseudo_labels(setup["checkpoint"], tmp_path / "raw", tmp_path / "p", device="cpu")


def test_bf16_labels_with_a_batch_norm_teacher(setup, tmp_path):
    """Convolutional teachers carry batch norm, whose running stats stay float32."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="resnet10t", features=16, img_size=32))
    checkpoint = save_checkpoint(tmp_path / "resnet.safetensors", model)
    values = {
        "batch_size": 4,
        "device": "cpu",
        "flip_tta": False,
        "progress": False,
        "rank": 0,
        "world_size": 3,
    }
    label_shards(checkpoint, setup["unlabeled"], tmp_path / "fp32", amp="fp32", **values)
    stats = label_shards(checkpoint, setup["unlabeled"], tmp_path / "bf16", amp="bf16", **values)
    assert stats["nan_count"] == 0
    a = read_shard(shard_path(tmp_path / "fp32", 0))["disparity"].astype(np.float32)
    b = read_shard(shard_path(tmp_path / "bf16", 0))["disparity"].astype(np.float32)
    assert np.abs(a - b).max() < 0.05 * np.abs(a).max()


def test_large_disparities_survive_float16_storage():
    """Scale-invariant training leaves the output scale free; labels must not overflow."""

    disparity = np.stack(
        [
            np.linspace(0.0, 3e6, 64, dtype=np.float32).reshape(8, 8),
            np.full((8, 8), 2e-3, np.float32),
        ]
    )
    disparity[1, 0, 0] = np.nan
    stored = to_float16_labels(disparity)
    assert stored.dtype == np.float16
    assert np.isfinite(stored[0]).all() and stored[0].max() == LABEL_PEAK
    restored = stored[0].astype(np.float32) * (3e6 / LABEL_PEAK)
    assert np.allclose(restored, disparity[0], rtol=2e-3, atol=3e6 * 1e-3)
    assert np.isnan(stored[1, 0, 0]) and np.isfinite(stored[1].ravel()[1:]).all()


def test_far_background_keeps_its_order_in_float16():
    """A softplus teacher puts far pixels at ~1e-7 of the peak; their order must survive."""

    tail = np.array([1.0, 1e-5, 1e-6, 3e-7, 1e-7, 3e-8, 1e-8, 0.0], np.float32)
    stored = to_float16_labels(np.stack([tail.reshape(2, 4), np.zeros((2, 4), np.float32)]))
    values = stored[0].ravel().astype(np.float64)
    assert (np.diff(values) < 0).all()
    assert np.allclose(values[1:-1] / values[0], tail[1:-1], rtol=2e-3)
    assert (stored[1] == 0).all()  # an all-zero map stays zero, not NaN
