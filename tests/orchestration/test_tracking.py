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
    from orchestration.lineage.paths import default_paths
    from orchestration.stages.base import StageContext
    from orchestration.stages.teacher import stage_teacher
    from orchestration.tracking import TrackingUnavailable
    from tests.helpers import smoke_params

    out = tmp_path / "models" / "teacher"
    out.mkdir(parents=True)
    (out / "model.safetensors").write_bytes(b"trained weights")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(TrackingUnavailable):
        stage_teacher(StageContext(smoke_params(), default_paths(tmp_path)))
    assert (out / "model.safetensors").read_bytes() == b"trained weights"


# --------------------------------------------------------------------------------------------
# a tiny lineage: what MLflow holds after the teacher, one student and the agreement report

LINEAGE_STAGES = ("labeled_data", "unlabeled_images", "target_eval", "teacher", "pseudo_labels")


@pytest.fixture(scope="module")
def tracked_lineage(tmp_path_factory):
    """The smoke profile cut to one student and a few steps, run through every stage up to the
    agreement report with the local MLflow store; (root, params, student name, client)."""
    import yaml
    from mlflow.tracking import MlflowClient

    from orchestration.lineage.paths import default_paths
    from orchestration.params.schema import load_params
    from orchestration.stages.base import StageContext
    from orchestration.stages.registry import run_stage
    from tests.helpers import smoke_raw

    root = tmp_path_factory.mktemp("tracked")
    raw = smoke_raw()
    name = next(iter(raw["students"]))
    raw["students"] = {name: {**raw["students"][name], "max_steps": 3}}
    raw["agreement"]["experts"] = ["teacher", f"student:{name}"]
    raw["teacher"].update(epochs=1, max_steps=2)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    params = load_params(root / "params.yaml")
    with pytest.MonkeyPatch.context() as env:
        for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "DEPTH_DISTILL_TRACKING"):
            env.delenv(variable, raising=False)
        ctx = StageContext(params=params, paths=default_paths(root))
        for stage in LINEAGE_STAGES:
            run_stage(stage, ctx)
        run_stage("student", ctx, student=name)
        run_stage("agreement", ctx)
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    return root, params, name, client


def _runs_by_stage(client) -> dict:
    exp = client.get_experiment_by_name("depth-distill")
    return {
        r.data.tags["stage"]: r
        for r in client.search_runs([exp.experiment_id])
        if "stage" in r.data.tags
    }


def test_teacher_and_student_runs_log_the_same_parameter_keys(tracked_lineage):
    _, params, name, client = tracked_lineage
    runs = _runs_by_stage(client)
    teacher, student = runs["teacher"], runs[f"student_{name}"]
    assert set(teacher.data.params) == set(student.data.params)
    assert {"model.backbone", "optim.lr", "epochs", "batch_size", "device"} <= set(
        student.data.params
    )
    assert not [k for k in student.data.params if k.startswith(("teacher.", "students."))]
    assert teacher.data.params["model.backbone"] == params.teacher.model.backbone
    assert student.data.params["model.backbone"] == params.students[name].model.backbone
    assert float(student.data.params["optim.lr"]) == params.students[name].optim.lr
    assert student.data.params["max_steps"] == "3" and teacher.data.params["max_steps"] == "2"
    assert (teacher.data.tags["role"], student.data.tags["role"]) == ("teacher", "student")
    assert student.data.tags["student"] == name and "student" not in teacher.data.tags


def test_each_trained_model_is_a_registered_version_of_its_run(tracked_lineage):
    import json

    from mlflow.artifacts import download_artifacts

    from orchestration.lineage.files import md5_file

    root, params, name, client = tracked_lineage
    runs = _runs_by_stage(client)
    for registered, stage, model in (
        ("depth-distill-teacher", "teacher", params.teacher.model),
        (f"depth-distill-student-{name}", f"student_{name}", params.students[name].model),
    ):
        (version,) = client.search_model_versions(f"name = '{registered}'")
        assert version.run_id == runs[stage].info.run_id
        assert version.tags["role"] == runs[stage].data.tags["role"]
        metrics = json.loads((root / f"metrics/{stage}.json").read_text())
        assert version.tags["checkpoint_md5"] == metrics["checkpoint_md5"]
        folder = Path(download_artifacts(artifact_uri=version.source))
        assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
        assert md5_file(folder / "model.safetensors") == metrics["checkpoint_md5"]
        config = json.loads((folder / "config.json").read_text())
        assert config["model"]["backbone"] == model.backbone
    controls = client.search_model_versions("name LIKE 'depth-distill-control%'")
    assert list(controls) == []


def test_the_agreement_report_html_is_an_artifact_of_its_run(tracked_lineage):
    _, _, _, client = tracked_lineage
    report = _runs_by_stage(client)["agreement"]
    listed = [a.path for a in client.list_artifacts(report.info.run_id, "agreement_report")]
    assert "agreement_report/report.html" in listed
    assert "agreement.pairs.seed" in report.data.params


# --------------------------------------------------------------------------------------------
# configuration: the experiment and the UI address


def test_the_experiment_name_comes_from_the_environment(tracking_root, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "depth-distill-sweeps")
    with stage_run(tracking_root, "teacher", "teacher", "k", "cli") as run:
        pass
    client = MlflowClient(tracking_uri=f"sqlite:///{tracking_root / 'mlflow.db'}")
    assert client.get_experiment_by_name("depth-distill") is None
    exp = client.get_experiment_by_name("depth-distill-sweeps")
    assert client.get_run(run.run_id).info.experiment_id == exp.experiment_id


def test_the_ui_address_in_links_comes_from_configuration(monkeypatch):
    from orchestration.dagster_app.metadata import mlflow_url

    monkeypatch.delenv("DEPTH_DISTILL_MLFLOW_UI", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert mlflow_url("r1") == "http://127.0.0.1:5000/#/runs/r1"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.lab.example:8443/")
    assert mlflow_url("r1", "7") == "https://mlflow.lab.example:8443/#/experiments/7/runs/r1"
    monkeypatch.setenv("DEPTH_DISTILL_MLFLOW_UI", "http://localhost:5055/")
    assert mlflow_url("r1") == "http://localhost:5055/#/runs/r1"


def test_tracking_off_registers_no_model(tracking_root, monkeypatch):
    monkeypatch.setenv("DEPTH_DISTILL_TRACKING", "off")
    weights = tracking_root / "model.safetensors"
    weights.write_bytes(b"weights")
    with stage_run(tracking_root, "teacher", "teacher", "k", "cli") as run:
        assert run.register_model("depth-distill-teacher", [weights], {"epochs": 1}) is None
    assert not (tracking_root / "mlflow.db").exists()
