"""Teachers you already have (`teacher.source: checkpoint | transformers`) through the lineage:
the teacher stage installs and evaluates them with a trained teacher's metric keys, they
pseudo-label and vote, and MLflow, Dagster and DVC say what they are."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import yaml

from orchestration.lineage.files import md5_file
from orchestration.lineage.paths import default_paths
from orchestration.params.schema import load_params
from orchestration.stages.base import StageContext
from orchestration.stages.registry import run_stage
from tests.helpers import save_tiny_depth_anything, smoke_raw
from tests.orchestration.conftest import BIN, run

DATA_STAGES = ("labeled_data", "unlabeled_images", "target_eval")
TEACHER_PICTURES = ("history.json", "steps.json", "loss_curve.png", "samples.png")


@pytest.fixture(scope="module", autouse=True)
def _local_tracking():
    """Every project root gets its own MLflow store (root/mlflow.db)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield


def _smoke_params(**teacher) -> dict:
    """The smoke profile with one short student and a 2-step teacher: teacher + one student vote."""
    raw = smoke_raw()
    name = list(raw["students"])[-1]
    raw["students"] = {name: {**raw["students"][name], "max_steps": 3}}
    raw["agreement"]["experts"] = ["teacher", f"student:{name}"]
    raw["teacher"].update(epochs=1, max_steps=2)
    raw["teacher"].update(teacher)
    return raw


def _project(root: Path, data_from: Path | None, **teacher) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if data_from is not None:
        shutil.copytree(data_from / "data", root / "data")
    (root / "params.yaml").write_text(yaml.safe_dump(_smoke_params(**teacher), sort_keys=False))
    return root


def _context(root: Path) -> StageContext:
    return StageContext(params=load_params(root / "params.yaml"), paths=default_paths(root))


def _runs(root: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("depth-distill")
    return client.search_runs([experiment.experiment_id], max_results=100)


def _role(runs, role: str):
    found = [r for r in runs if r.data.tags.get("role") == role]
    assert found, f"no MLflow run with role={role}"
    return found[0]


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory) -> Path:
    root = _project(tmp_path_factory.mktemp("smoke-data"), None)
    ctx = _context(root)
    for stage in DATA_STAGES:
        run_stage(stage, ctx)
    return root


@pytest.fixture(scope="module")
def trained_teacher(smoke_data, tmp_path_factory) -> tuple[dict, Path]:
    """A teacher trained here for two steps: its metrics, and its checkpoint copied elsewhere."""
    root = _project(tmp_path_factory.mktemp("trained"), smoke_data)
    metrics = run_stage("teacher", _context(root)).metrics
    given = tmp_path_factory.mktemp("given") / "teacher.safetensors"
    shutil.copyfile(root / "models/teacher/model.safetensors", given)
    return metrics, given


def _existing_keys(trained: dict) -> set[str]:
    """A trained teacher's metric keys less the training statistics (nothing is trained)."""
    return {k for k in trained if not k.startswith("train/")}


def test_checkpoint_teacher_is_evaluated_like_the_trained_one(
    trained_teacher, smoke_data, tmp_path
):
    trained, given = trained_teacher
    root = _project(tmp_path / "project", smoke_data, source="checkpoint", path=str(given))
    ctx = _context(root)
    result = run_stage("teacher", ctx)

    assert set(result.metrics) == _existing_keys(trained)
    assert json.loads((root / "metrics/teacher.json").read_text()).keys() == set(result.metrics)
    for key, value in trained.items():
        if key.startswith(("val/", "baseline/")):
            assert result.metrics[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    installed = root / "models/teacher/model.safetensors"
    assert md5_file(installed) == md5_file(given) == result.metrics["checkpoint_md5"]
    assert not (root / "models/teacher/checkpoints").exists(), "nothing may be trained"
    for name in TEACHER_PICTURES:
        assert (root / "reports/teacher" / name).exists(), name
    assert result.info["teacher_source"] == "checkpoint"
    assert result.info["teacher_path"] == str(given.resolve())

    teacher_run = _role(_runs(root), "teacher")
    assert teacher_run.data.tags["teacher_source"] == "checkpoint"
    assert teacher_run.data.tags["teacher_path"] == str(given)
    assert run_stage("pseudo_labels", ctx).metrics["complete"] == 1.0


def test_a_teacher_path_inside_the_teacher_output_is_refused_before_deleting(
    trained_teacher, tmp_path
):
    _, given = trained_teacher
    root = _project(
        tmp_path / "project", None, source="checkpoint", path="models/teacher/model.safetensors"
    )
    teacher_dir = root / "models/teacher"
    teacher_dir.mkdir(parents=True)
    shutil.copyfile(given, teacher_dir / "model.safetensors")
    (teacher_dir / "history.json").write_text("{}")
    with pytest.raises(ValueError, match=r"teacher\.path .*inside the teacher's output"):
        run_stage("teacher", _context(root))
    assert (teacher_dir / "history.json").exists() and (teacher_dir / "model.safetensors").exists()

    moved = _project(tmp_path / "moved", None, source="checkpoint", path=str(given))
    ctx = _context(moved)
    (moved / "models/teacher").mkdir(parents=True)
    (moved / "models/teacher/keep.txt").write_text("still here")
    given.rename(given.with_suffix(".moved"))
    try:
        with pytest.raises(ValueError, match=r"teacher\.path .*does not exist"):
            run_stage("teacher", ctx)
    finally:
        given.with_suffix(".moved").rename(given)
    assert (moved / "models/teacher/keep.txt").exists()


@pytest.mark.slow
def test_transformers_teacher_through_the_lineage_in_dagster(trained_teacher, smoke_data, tmp_path):
    pytest.importorskip("transformers")
    import dagster as dg

    from orchestration.dagster_app.definitions import (
        PipelineResource,
        build_definitions,
        lineage_resources,
    )

    trained, _ = trained_teacher
    folder = save_tiny_depth_anything(tmp_path / "depth-anything-tiny")
    root = _project(tmp_path / "project", smoke_data, source="transformers", path=str(folder))
    defs = build_definitions(load_params(root / "params.yaml"))
    result = dg.materialize(
        [*defs.assets, *defs.asset_checks],
        resources=lineage_resources(PipelineResource(root=str(root), commit_to_dvc=False)),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    failed = [c.check_name for c in result.get_asset_check_evaluations() if not c.passed]
    assert "no_nan" not in failed and "covers_every_expert" not in failed, failed

    teacher_asset = defs.get_assets_def("teacher_checkpoint")
    assert teacher_asset.tags_by_key[dg.AssetKey("teacher_checkpoint")]["teacher_source"] == (
        "transformers"
    )
    metadata = result.asset_materializations_for_node("teacher_checkpoint")[0].metadata
    assert metadata["teacher_source"].value == "transformers"
    assert metadata["teacher_model_type"].value == "depth_anything"
    assert metadata["teacher_path"].value == str(folder.resolve())
    teacher_metrics = json.loads((root / "metrics/teacher.json").read_text())
    assert set(teacher_metrics) == _existing_keys(trained)
    assert (root / "models/teacher/transformers/config.json").exists()
    assert json.loads((root / "metrics/agreement.json").read_text())["n_experts"] == 2

    runs = _runs(root)
    teacher_run, student_run = _role(runs, "teacher"), _role(runs, "student")
    assert teacher_run.data.tags["teacher_source"] == "transformers"
    assert teacher_run.data.tags["teacher_path"] == str(folder)
    assert teacher_run.data.tags["teacher_depth_type"] == "relative"
    assert student_run.data.tags["teacher_source"] == "transformers"
    assert {k for k in teacher_run.data.metrics if k.startswith("val/")} == {
        k for k in student_run.data.metrics if k.startswith("val/")
    }


@pytest.mark.slow
def test_dvc_repro_with_a_transformers_teacher(project_copy: Path):
    """Under the real DVC: a relative teacher.path, the copy in models/teacher as the teacher's
    output that pseudo_labels and agreement depend on, and a clean `dvc status` afterwards."""
    pytest.importorskip("transformers")
    save_tiny_depth_anything(project_copy / "teachers" / "da-tiny")
    raw = _smoke_params(source="transformers", path="teachers/da-tiny")
    (project_copy / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    run([str(BIN / "dvc"), "repro"], project_copy, timeout=900)
    status = run([str(BIN / "dvc"), "status", "--json"], project_copy)
    assert json.loads(status.stdout or "{}") == {}, status.stdout
    lock = yaml.safe_load((project_copy / "dvc.lock").read_text())["stages"]
    assert lock["teacher"]["params"]["params.yaml"]["teacher"]["source"] == "transformers"
    assert any(d["path"] == "models/teacher" for d in lock["pseudo_labels"]["deps"])
    assert (project_copy / "models/teacher/transformers/config.json").exists()
    metrics = json.loads((project_copy / "metrics/teacher.json").read_text())
    assert "val/target/abs_rel" in metrics and "baseline/target/abs_rel" in metrics
    assert json.loads((project_copy / "metrics/agreement.json").read_text())["n_experts"] == 2
    assert _role(_runs(project_copy), "teacher").data.tags["teacher_source"] == "transformers"
