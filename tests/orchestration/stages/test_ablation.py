"""The ablation runs beside the main lineage: from-scratch models and labeled-only controls."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from depth_core.models import read_checkpoint_config
from orchestration.lineage.paths import default_paths
from orchestration.params.schema import load_params
from orchestration.stages.ablation import markdown_table, run_ablation, without_pretraining
from orchestration.stages.base import StageContext
from orchestration.stages.registry import run_stage
from tests.helpers import smoke_params, smoke_raw
from tests.orchestration.conftest import REPO

STAGES = ("labeled_data", "unlabeled_images", "target_eval", "teacher", "pseudo_labels")


@pytest.fixture(autouse=True)
def _local_tracking(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _tiny_lineage(root: Path) -> Path:
    """The smoke profile cut to one student and a few steps, its main lineage run."""
    raw = smoke_raw()
    name = next(iter(raw["students"]))
    raw["students"] = {name: {**raw["students"][name], "max_steps": 3}}
    raw["agreement"]["experts"] = ["teacher", f"student:{name}"]
    raw["teacher"].update(epochs=1, max_steps=2)
    root.mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    ctx = StageContext(params=load_params(root / "params.yaml"), paths=default_paths(root))
    for stage in STAGES:
        run_stage(stage, ctx)
    run_stage("student", ctx, student=name)
    return root


def test_without_pretraining_clears_every_encoder():
    params = load_params(REPO / "params.yaml")
    assert params.teacher.model.pretrained is not None  # the default lineage is pretrained
    scratch = without_pretraining(params)
    assert scratch.teacher.model.pretrained is None
    assert all(cfg.model.pretrained is None for cfg in scratch.students.values())
    assert scratch.teacher.model.backbone == params.teacher.model.backbone
    models = [scratch.teacher.model, *(cfg.model for cfg in scratch.students.values())]
    assert all(model.frozen_stages == 0 for model in models)  # random layers are never frozen


def test_ablation_trains_beside_the_lineage_and_reports(tmp_path):
    root = _tiny_lineage(tmp_path / "project")
    params = load_params(root / "params.yaml")
    name = next(iter(params.students))
    main_student = json.loads((root / f"metrics/student_{name}.json").read_text())
    before = {p: p.stat().st_mtime_ns for p in (root / "models").rglob("*") if p.is_file()}

    summary = run_ablation(params, root)

    control = root / "experiments/ablation-labeled-only/models/controls" / name
    assert summary["labeled_only"][f"student_{name}"]["train_steps"] == main_student["train/steps"]
    assert read_checkpoint_config(control / "model.safetensors").backbone == (
        params.students[name].model.backbone
    )
    scratch = root / "experiments/ablation-scratch/models"
    assert read_checkpoint_config(scratch / "teacher/model.safetensors").pretrained is None
    assert read_checkpoint_config(scratch / f"students/{name}/model.safetensors").pretrained is None
    after = {p: p.stat().st_mtime_ns for p in (root / "models").rglob("*") if p.is_file()}
    assert after == before, "the main lineage's outputs must not change"
    report = root / "reports/ablation"
    for file in ("ablation.json", "ablation.md", "ablation.png"):
        assert (report / file).stat().st_size > 0, file
    table = (report / "ablation.md").read_text()
    assert f"student_{name}" in table and "row prior" in table


def test_ablation_needs_the_main_lineage_first(tmp_path):
    params = smoke_params()
    with pytest.raises(FileNotFoundError, match="run the main lineage"):
        run_ablation(params, tmp_path, variants=("labeled_only",))


def test_unknown_variant_is_named(tmp_path):
    params = smoke_params()
    with pytest.raises(ValueError, match="unknown ablation variant.*'nope'"):
        run_ablation(params, tmp_path, variants=("nope",))


def test_markdown_table_shows_missing_cells_as_dashes():
    summary = {
        "pretrained": {"teacher": {"val/target/abs_rel": 0.2, "val/target/pair_accuracy": 0.8}},
        "scratch": {},
        "row_prior": {"val/target/abs_rel": 0.5, "val/target/pair_accuracy": 0.7},
    }
    table = markdown_table(summary)
    assert "| teacher | 0.200 / 0.800 | - |" in table
    assert "| row prior | 0.500 / 0.700 |" in table
