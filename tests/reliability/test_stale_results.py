"""Reruns redo what changed: a new teacher relabels, a code change retrains, nothing else does."""

from __future__ import annotations

import torch

from depth_core.models import ModelConfig, build_model, save_checkpoint
from orchestration.lineage import fingerprints
from orchestration.lineage.paths import default_paths
from orchestration.stages import base, pseudo_labels
from orchestration.stages.base import StageContext
from orchestration.stages.pseudo_labels import stage_pseudo_labels
from tests.depth_core.training.conftest import make_dataset
from tests.helpers import TINY_VIT, smoke_params


def _context(root) -> StageContext:
    params = smoke_params()
    params = params.model_copy(
        update={
            "device": "cpu",
            "pseudo_labels": params.pseudo_labels.model_copy(
                update={"amp": "fp32", "flip_tta": False, "scales": [1.0]}
            ),
        }
    )
    return StageContext(params, default_paths(root), pipeline_key="k")


def _save_teacher(root, seed: int) -> None:
    torch.manual_seed(seed)
    path = root / "models" / "teacher" / "model.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, build_model(ModelConfig(**TINY_VIT)))


def test_pseudo_labels_are_redone_for_a_new_teacher_and_kept_otherwise(tmp_path, monkeypatch):
    make_dataset(tmp_path / "data" / "unlabeled", n=6, shard_size=3, kind="unlabeled")
    monkeypatch.setattr(pseudo_labels, "write_preview", lambda dataset_dir, out_png, n=16: out_png)
    _save_teacher(tmp_path, seed=0)
    assert stage_pseudo_labels(_context(tmp_path)).metrics["n_shards_written"] == 2
    again = stage_pseudo_labels(_context(tmp_path)).metrics
    assert again["n_shards_written"] == 0, "nothing changed: the finished shards are kept"
    _save_teacher(tmp_path, seed=1)  # same params, other weights
    relabeled = stage_pseudo_labels(_context(tmp_path)).metrics
    assert relabeled["n_shards_written"] == 2, "a new teacher must relabel every shard"

    real_digest = fingerprints.code_digest
    monkeypatch.setattr(base, "code_digest", lambda stage: real_digest(stage) + "-edited")
    edited = stage_pseudo_labels(_context(tmp_path)).metrics
    assert edited["n_shards_written"] == 2, "edited pseudo-labelling code must relabel"
