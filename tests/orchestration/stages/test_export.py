"""export@<student> at smoke size: the ONNX file, its metrics, and the student's MLflow run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from depth_core.models import build_model, save_checkpoint
from orchestration.lineage.paths import default_paths
from orchestration.stages.base import StageContext
from orchestration.stages.registry import run_stage
from orchestration.tracking import stage_run
from tests.helpers import smoke_params

STUDENT = "lite0_small"


@pytest.fixture
def trained_student(tmp_path, monkeypatch):
    """A smoke-size student checkpoint and the MLflow run that 'trained' it, in a fresh root."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = smoke_params()
    torch.manual_seed(0)
    model = build_model(params.students[STUDENT].model, load_pretrained=False).eval()
    save_checkpoint(tmp_path / f"models/students/{STUDENT}/model.safetensors", model)
    with stage_run(tmp_path, f"student_{STUDENT}", "student", "k", "cli") as run:
        run.log_metrics({"val/target/abs_rel": 0.5})
        run.register_model(
            f"depth-distill-student-{STUDENT}",
            [tmp_path / f"models/students/{STUDENT}/model.safetensors"],
            params.students[STUDENT].model_dump(mode="json"),
        )
    (tmp_path / "metrics").mkdir()
    metrics = {"mlflow_run_id": run.run_id}
    (tmp_path / f"metrics/student_{STUDENT}.json").write_text(json.dumps(metrics))
    return StageContext(params=params, paths=default_paths(tmp_path), pipeline_key="k"), run


def test_export_stage_writes_the_file_metrics_and_mlflow_artifact(trained_student, tmp_path):
    from mlflow.tracking import MlflowClient

    ctx, run = trained_student
    result = run_stage("export", ctx, student=STUDENT)
    onnx_file = tmp_path / f"models/onnx/{STUDENT}.onnx"
    assert result.outputs == [onnx_file.resolve()] and onnx_file.is_file()
    recorded = json.loads((tmp_path / f"metrics/export_{STUDENT}.json").read_text())
    assert recorded["onnx_bytes"] == onnx_file.stat().st_size
    assert recorded["parity_max_rel_diff"] < 1e-3 and recorded["cpu_latency_ms"] > 0
    assert recorded["dynamic_shapes"] is True and len(recorded["onnx_sha256"]) == 64
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert [a.path for a in client.list_artifacts(run.run_id, "onnx")] == [f"onnx/{STUDENT}.onnx"]
    logged = client.get_run(run.run_id)
    assert logged.data.tags["onnx_sha256"] == recorded["onnx_sha256"]
    assert "onnx/cpu_latency_ms" in logged.data.metrics
    assert result.info["mlflow_model"] == f"depth-distill-student-{STUDENT}/1"


def test_the_onnx_file_is_reachable_from_the_students_registered_version(trained_student, tmp_path):
    from mlflow.artifacts import download_artifacts
    from mlflow.tracking import MlflowClient

    ctx, run = trained_student
    run_stage("export", ctx, student=STUDENT)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    version = client.get_model_version(f"depth-distill-student-{STUDENT}", "1")
    assert version.run_id == run.run_id
    downloaded = download_artifacts(artifact_uri=version.tags["onnx_uri"], dst_path=tmp_path / "dl")
    onnx_file = tmp_path / f"models/onnx/{STUDENT}.onnx"
    assert Path(downloaded).read_bytes() == onnx_file.read_bytes()
    recorded = json.loads((tmp_path / f"metrics/export_{STUDENT}.json").read_text())
    assert version.tags["onnx_sha256"] == recorded["onnx_sha256"]


def test_export_without_tracking_leaves_the_run_and_version_alone(
    trained_student, tmp_path, monkeypatch
):
    from mlflow.tracking import MlflowClient

    ctx, run = trained_student
    monkeypatch.setenv("DEPTH_DISTILL_TRACKING", "off")
    result = run_stage("export", ctx, student=STUDENT)
    assert result.mlflow_run_id is None and "mlflow_model" not in result.info
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert "onnx_uri" not in client.get_model_version(f"depth-distill-student-{STUDENT}", "1").tags
    assert client.list_artifacts(run.run_id, "onnx") == []


def test_export_needs_a_student_and_its_checkpoint(tmp_path):
    ctx = StageContext(params=smoke_params(), paths=default_paths(tmp_path), pipeline_key="k")
    with pytest.raises(ValueError, match="--student"):
        run_stage("export", ctx)
    with pytest.raises(FileNotFoundError, match="stage student --student lite0"):
        run_stage("export", ctx, student="lite0")


def test_every_student_has_an_onnx_asset():
    from orchestration.dagster_app.definitions import build_definitions

    params = smoke_params()
    keys = {key.to_user_string() for key in build_definitions(params).resolve_all_asset_keys()}
    assert {f"student_onnx_{name}" for name in params.students} <= keys
