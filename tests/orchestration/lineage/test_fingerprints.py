"""A stage's output is redone when its code or an input's content changes, kept otherwise."""

from __future__ import annotations

import pytest

from orchestration.lineage import dvc_file, fingerprints
from orchestration.stages.base import prepare_output
from orchestration.stages.registry import STAGE_NAMES


@pytest.fixture
def code_tree(tmp_path, monkeypatch):
    """A checkout with one stage whose code is depth_core/work.py."""
    root = tmp_path / "checkout"
    (root / "depth_core").mkdir(parents=True)
    (root / "depth_core" / "work.py").write_text("x = 1\n")
    (root / "dvc.yaml").write_text(
        "stages:\n  make:\n    cmd: make\n    deps:\n      - data/in\n      - depth_core/work.py\n"
    )
    monkeypatch.setattr(fingerprints, "CODE_ROOT", root)
    monkeypatch.setattr(fingerprints, "DVC_FILE", root / "dvc.yaml")
    dvc_file.read_stages.cache_clear()
    fingerprints.code_digest.cache_clear()
    yield root
    dvc_file.read_stages.cache_clear()
    fingerprints.code_digest.cache_clear()


def test_a_code_change_clears_the_output(code_tree, tmp_path):
    out = tmp_path / "out"
    prepare_output(out, {"n": 1}, code="make")
    (out / "shard-0.npz").write_bytes(b"done")
    prepare_output(out, {"n": 1}, code="make")
    assert (out / "shard-0.npz").exists(), "unchanged code must resume"
    (code_tree / "depth_core" / "work.py").write_text("x = 2\n")
    fingerprints.code_digest.cache_clear()  # a new process
    prepare_output(out, {"n": 1}, code="make")
    assert not (out / "shard-0.npz").exists(), "changed code must redo the work"


def test_only_code_deps_count(code_tree):
    assert fingerprints.stage_code_deps("make") == ["depth_core/work.py"]
    with pytest.raises(KeyError, match="no stage 'other'"):
        fingerprints.stage_code_deps("other")


def test_a_changed_teacher_checkpoint_relabels(tmp_path):
    teacher, labels = tmp_path / "teacher", tmp_path / "pseudo_labels"
    prepare_output(teacher, {"lr": 1})
    (teacher / "model.safetensors").write_bytes(b"weights-1")
    prepare_output(labels, {"batch": 2}, [teacher])
    (labels / "shard-000000.npz").write_bytes(b"labels")
    prepare_output(labels, {"batch": 2}, [teacher])
    assert (labels / "shard-000000.npz").exists()
    (teacher / "model.safetensors").write_bytes(b"weights-2")  # same params, new weights
    prepare_output(labels, {"batch": 2}, [teacher])
    assert not (labels / "shard-000000.npz").exists()


def test_a_changed_dataset_manifest_retrains(tmp_path):
    data, model = tmp_path / "labeled", tmp_path / "model"
    (data / "shards").mkdir(parents=True)
    (data / "manifest.parquet").write_bytes(b"ids 1")
    prepare_output(model, {"lr": 1}, [data])
    (model / "train_state.pt").write_bytes(b"state")
    (data / "manifest.parquet").write_bytes(b"ids 2")
    prepare_output(model, {"lr": 1}, [data])
    assert not (model / "train_state.pt").exists()


def test_every_stage_has_its_code_deps_in_dvc_yaml():
    for stage in STAGE_NAMES:
        deps = fingerprints.stage_code_deps(stage)
        assert deps, f"dvc.yaml stage {stage} lists no code"
        assert len(fingerprints.code_digest(stage)) == 64
    assert "depth_core/synth" in fingerprints.stage_code_deps("labeled_data")
    assert "depth_core/losses.py" in fingerprints.stage_code_deps("teacher")
