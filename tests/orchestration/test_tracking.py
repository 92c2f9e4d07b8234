from pathlib import Path

import pytest

from orchestration.tracking import stage_run


@pytest.fixture()
def tracking_root(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def test_stage_runs_nest_under_one_pipeline_run(tracking_root: Path):
    from mlflow.tracking import MlflowClient

    with stage_run(tracking_root, "teacher", "teacher", "key-1", "dvc", {"teacher.epochs": 3}) as t:
        t.log_metrics({"train/loss": 1.5, "val/target/abs_rel": float("nan")}, step=0)
        t.log_metrics({"train/loss": 1.0}, step=1)
    with stage_run(tracking_root, "student_a", "student", "key-1", "dvc") as s:
        s.log_metrics({"train/loss": 0.5}, step=0)

    client = MlflowClient(tracking_uri=f"sqlite:///{tracking_root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("depth-distill")
    runs = client.search_runs([exp.experiment_id])
    by_role = {r.data.tags["role"]: r for r in runs}
    assert set(by_role) == {"pipeline", "teacher", "student"}
    parent = by_role["pipeline"].info.run_id
    assert by_role["teacher"].data.tags["mlflow.parentRunId"] == parent
    assert by_role["student"].data.tags["mlflow.parentRunId"] == parent
    assert by_role["teacher"].data.tags["runner"] == "dvc"
    assert by_role["teacher"].data.params["teacher.epochs"] == "3"
    history = client.get_metric_history(by_role["teacher"].info.run_id, "train/loss")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
        (0, 1.5),
        (1, 1.0),
    ]
    # NaN is dropped rather than stored
    assert "val/target/abs_rel" not in by_role["teacher"].data.metrics
    assert by_role["teacher"].info.status == "FINISHED"


def test_failed_stage_marks_run_failed(tracking_root: Path):
    from mlflow.tracking import MlflowClient

    with (
        pytest.raises(RuntimeError),
        stage_run(tracking_root, "teacher", "teacher", "key-2", "cli"),
    ):
        raise RuntimeError("boom")
    client = MlflowClient(tracking_uri=f"sqlite:///{tracking_root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("depth-distill")
    teacher = [
        r for r in client.search_runs([exp.experiment_id]) if r.data.tags["role"] == "teacher"
    ]
    assert teacher[0].info.status == "FAILED"


def test_a_different_pipeline_key_gets_its_own_parent(tracking_root: Path):
    from mlflow.tracking import MlflowClient

    for key in ("k1", "k2"):
        with stage_run(tracking_root, "teacher", "teacher", key, "dagster"):
            pass
    client = MlflowClient(tracking_uri=f"sqlite:///{tracking_root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("depth-distill")
    parents = [
        r for r in client.search_runs([exp.experiment_id]) if r.data.tags["role"] == "pipeline"
    ]
    assert len(parents) == 2


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_server_fails_fast_with_one_clear_line(tracking_root, monkeypatch):
    import time

    from orchestration.tracking import TrackingUnavailable

    uri = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    start = time.perf_counter()
    with (
        pytest.raises(TrackingUnavailable) as error,
        stage_run(tracking_root, "teacher", "teacher", "k", "cli"),
    ):
        pass
    assert time.perf_counter() - start < 10
    message = str(error.value)
    assert uri in message and "DEPTH_DISTILL_TRACKING=off" in message and "\n" not in message


def test_tracking_off_records_nothing(tracking_root, monkeypatch):
    monkeypatch.setenv("DEPTH_DISTILL_TRACKING", "off")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_closed_port()}")
    with stage_run(tracking_root, "teacher", "teacher", "k", "cli", {"a": 1}) as run:
        run.log_metrics({"train/loss": 1.0}, step=1)
        run.log_artifact(tracking_root)
    assert run.run_id is None
    assert not (tracking_root / "mlflow.db").exists()


def test_an_unreachable_server_keeps_the_trained_teacher(tmp_path, monkeypatch):
    from orchestration.layout import default_layout
    from orchestration.stages import StageContext, stage_teacher
    from orchestration.tracking import TrackingUnavailable
    from tests.helpers import smoke_params

    out = tmp_path / "models" / "teacher"
    out.mkdir(parents=True)
    (out / "model.safetensors").write_bytes(b"trained weights")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(TrackingUnavailable):
        stage_teacher(StageContext(smoke_params(), default_layout(tmp_path)))
    assert (out / "model.safetensors").read_bytes() == b"trained weights"
