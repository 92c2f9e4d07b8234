"""The whole lineage at smoke size through Dagster (in-process and CLI) and through DVC."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.orchestration.conftest import BIN, run, tool_env

pytestmark = pytest.mark.slow

TRAINING_RUN_ROLES = ("teacher", "student")


def _mlflow_runs(root: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("depth-distill")
    assert exp is not None, "no MLflow experiment was created"
    return client.search_runs([exp.experiment_id], max_results=1000)


def _assert_mlflow_teacher_and_students(root: Path, runner: str) -> None:
    runs = [r for r in _mlflow_runs(root) if r.data.tags.get("runner") == runner]
    roles = {}
    for r in runs:
        roles.setdefault(r.data.tags.get("role"), []).append(r)
    assert roles.get("teacher") and roles.get("student"), f"roles seen: {sorted(roles)}"
    val_keys = [
        {k for k in r.data.metrics if k.startswith("val/")}
        for role in TRAINING_RUN_ROLES
        for r in roles[role]
    ]
    assert val_keys[0], "no validation metrics logged"
    assert all(keys == val_keys[0] for keys in val_keys), "teacher/student metric keys differ"
    parents = {
        r.data.tags["mlflow.parentRunId"] for role in TRAINING_RUN_ROLES for r in roles[role]
    }
    assert len(parents) == 1, "stages of one pipeline run must share a parent run"


def _assert_dvc_clean(root: Path) -> None:
    status = run([str(BIN / "dvc"), "status", "--json"], root)
    assert json.loads(status.stdout or "{}") == {}, status.stdout


def test_dagster_in_process_materialisation_keeps_dvc_clean(project_copy: Path):
    import dagster as dg

    from orchestration.dagster_app.definitions import (
        PipelineResource,
        build_definitions,
        lineage_resources,
    )
    from orchestration.params.schema import load_params

    os.environ.pop("MLFLOW_TRACKING_URI", None)
    defs = build_definitions(load_params(project_copy / "params.yaml"))
    result = dg.materialize(
        [*defs.assets, *defs.asset_checks],
        resources=lineage_resources(PipelineResource(root=str(project_copy))),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert checks, "no asset checks ran"
    # Integrity checks must pass; model-quality checks (WARN) must run, but a smoke-size model
    # is not expected to beat the row prior.
    failed = [
        (c.asset_key.to_user_string(), c.check_name, c.metadata)
        for c in checks
        if not c.passed and c.severity == dg.AssetCheckSeverity.ERROR
    ]
    assert not failed, failed
    assert {c.check_name for c in checks} >= {
        "no_nan",
        "covers_every_expert",
        "beats_row_prior",
        "not_inverted",
        "depth_mostly_valid",
    }
    teacher_md = result.asset_materializations_for_node("teacher_checkpoint")[0].metadata
    assert (
        "checkpoint_md5" in teacher_md
        and "mlflow_run_id" in teacher_md
        and "pictures" in teacher_md
    )
    _assert_dvc_clean(project_copy)
    _assert_mlflow_teacher_and_students(project_copy, "dagster")


def test_dagster_cli_materialises_every_asset_in_parallel(project_copy: Path, monkeypatch):
    """The `lineage_parallel` job from the command line: each asset in its own process, the
    students at once against one mlflow.db, and DVC and Dagster agree afterwards."""
    import dagster as dg
    from dagster._core.definitions.data_version import DATA_VERSION_TAG

    from orchestration.dagster_app.lineage import lineage
    from orchestration.dagster_app.report import instance_for
    from orchestration.lineage.dvc_lock import lock_state
    from orchestration.params.schema import load_params

    command = ["job", "execute", "-m", "orchestration.dagster_app.definitions"]
    proc = run([str(BIN / "dagster"), *command, "-j", "lineage_parallel"], project_copy, 900)
    output = proc.stdout + proc.stderr
    assert "RUN_SUCCESS" in output
    assert "database is locked" not in output and "Unable to acquire lock" not in output
    assert (project_copy / "reports/agreement/report.html").exists()
    _assert_dvc_clean(project_copy)
    _assert_mlflow_teacher_and_students(project_copy, "dagster")
    students = [r for r in _mlflow_runs(project_copy) if r.data.tags.get("role") == "student"]
    assert {r.info.status for r in students} == {"FINISHED"}
    params = load_params(project_copy / "params.yaml")
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with instance_for(project_copy) as instance:
        (record,) = instance.get_run_records()
        steps = {f"student_checkpoint_{name}" for name in params.students}
        spans: dict[str, list[float]] = {}
        for entry in instance.all_logs(record.dagster_run.run_id):
            event = entry.dagster_event if entry.step_key in steps else None
            if event is not None and event.event_type_value in ("STEP_START", "STEP_SUCCESS"):
                spans.setdefault(entry.step_key, []).append(entry.timestamp)
        assert set(spans) == steps and all(len(span) == 2 for span in spans.values())
        ordered = sorted(spans.values())
        assert any(b[0] < a[1] for a, b in itertools.pairwise(ordered)), (
            f"no two students ran at once: {spans}"
        )
        for spec in lineage(params):
            record = instance.fetch_materializations(dg.AssetKey(spec.key), limit=1).records[0]
            version = record.asset_materialization.tags[DATA_VERSION_TAG]
            assert version == lock_state(project_copy, spec.dvc_stage).data_version, spec.key


def test_dvc_repro_metrics_and_experiments(project_copy: Path):
    run([str(BIN / "dvc"), "repro"], project_copy, timeout=900)
    _assert_dvc_clean(project_copy)
    metrics = json.loads(run([str(BIN / "dvc"), "metrics", "show", "--json"], project_copy).stdout)
    flat = json.dumps(metrics)
    assert "metrics/teacher.json" in flat and "metrics/student_" in flat
    assert "val/target/abs_rel" in flat
    _assert_mlflow_teacher_and_students(project_copy, "dvc")
    # a no-op repro is fast
    start = time.perf_counter()
    run([str(BIN / "dvc"), "repro"], project_copy)
    assert time.perf_counter() - start < 30
    # `dvc exp run -S` works beside Dagster's ANTLR (DVC lives in its own environment)
    exp = run(
        [str(BIN / "dvc"), "exp", "run", "-S", "agreement.pairs.seed=7"], project_copy, timeout=600
    )
    assert "agreement" in exp.stdout + exp.stderr


def test_killed_data_stage_resumes_without_redoing_shards(project_copy: Path):
    cmd = [
        str(BIN / "depth-distill"),
        "stage",
        "unlabeled_images",
        "-S",
        "data.unlabeled.n_images=96",
        "-S",
        "data.unlabeled.shard_size=8",
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=project_copy,
        env=tool_env(project_copy),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    shards = project_copy / "data/unlabeled/shards"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(shards.glob("shard-*.npz"))) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = {p.name: p.stat().st_mtime_ns for p in shards.glob("shard-*.npz")}
    assert 2 <= len(done) < 12, f"kill came too late to test resuming ({len(done)} shards)"
    run(cmd, project_copy)
    after = {p.name: p.stat().st_mtime_ns for p in shards.glob("shard-*.npz")}
    assert len(after) == 12
    assert all(after[name] == mtime for name, mtime in done.items()), "finished shards were redone"
    assert not list(shards.glob("*.tmp*")), "temporary files left behind"
