"""`dvc repro` and Dagster side by side: neither waits on a lock it could wait for, neither
clears outputs the other still hashes, and stages starting together share one MLflow store."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from orchestration.dagster_app.definitions import (
    PipelineResource,
    build_definitions,
    lineage_resources,
)
from orchestration.dagster_app.lineage import lineage
from orchestration.lineage.dvc_lock import LOCK_TAG, lock_state
from orchestration.lineage.dvc_sync import commit_stage
from orchestration.lineage.locks import OutputsBusy
from orchestration.lineage.paths import default_paths
from orchestration.params.schema import load_params
from orchestration.stages.base import StageContext
from orchestration.stages.registry import run_stage
from tests.helpers import smoke_params
from tests.orchestration.conftest import BIN, REPO, make_project_copy, run, tool_env

DVC_PYTHON = REPO / ".venv" / "dvc-env" / "bin" / "python"

_HOLD_DVC_LOCK = """
import time, zc.lockfile
lock = zc.lockfile.LockFile(".dvc/tmp/lock")
print("held", flush=True)
time.sleep(5)
lock.close()
"""

_STAGE_RUN = """
import sys
from pathlib import Path
from orchestration.tracking import stage_run
with stage_run(Path(sys.argv[1]), sys.argv[2], "student", "one-pipeline", "dagster") as run:
    for step in range(20):
        run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
"""


@pytest.fixture(scope="module")
def data_copy(tmp_path_factory):
    """A smoke project whose data stages DVC has run once (no tracking: nothing trains)."""
    root = make_project_copy(tmp_path_factory.mktemp("schedulers") / "project")
    run([str(BIN / "dvc"), "repro", *DATA_STAGES], root)
    return root


DATA_STAGES = ["labeled_data", "unlabeled_images", "target_eval"]


def _dvc_clean(root: Path) -> None:
    """DVC calls the data stages (all this copy ran) up to date."""
    status = run([str(BIN / "dvc"), "status", "--json", *DATA_STAGES], root)
    assert json.loads(status.stdout or "{}") == {}, status.stdout


def test_stages_starting_together_on_a_new_mlflow_store(tmp_path):
    """Four stage runs open a new sqlite store at once: before, three of four failed in
    MLflow's schema migration ("table metrics already exists", "duplicate column")."""
    env = {**tool_env(tmp_path), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _STAGE_RUN, str(tmp_path), f"student@s{i}"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(4)
    ]
    outputs = [child.communicate(timeout=300)[0] for child in children]
    for child, output in zip(children, outputs):
        assert child.returncode == 0, output[-3000:]
        assert "database is locked" not in output
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("depth-distill")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("role") == "pipeline"]
    stages = [r for r in runs if r.data.tags.get("role") == "student"]
    assert len(parents) == 1, "one pipeline, one parent run"
    assert sorted(r.data.tags["stage"] for r in stages) == [f"student@s{i}" for i in range(4)]
    assert {r.info.status for r in stages} == {"FINISHED"}
    assert {r.data.tags["mlflow.parentRunId"] for r in stages} == {parents[0].info.run_id}
    assert all(len(client.get_metric_history(r.info.run_id, "loss")) == 20 for r in stages)


def test_a_dagster_commit_waits_for_dvc_repository_lock(data_copy):
    """Before, `dvc commit` failed after 3 s ("Unable to acquire lock") while another DVC
    command held the repository lock, and the asset failed with it."""
    holder = subprocess.Popen(
        [
            str(DVC_PYTHON),
            "-c",
            _HOLD_DVC_LOCK,
        ],
        cwd=data_copy,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        start = time.monotonic()
        commit_stage(data_copy, "target_eval", timeout=120)
        assert time.monotonic() - start > 3, "it waited for the lock"
    finally:
        holder.wait(timeout=30)
    _dvc_clean(data_copy)


def _hold_like_dvc(root: Path, paths: list[str], mode: str) -> subprocess.Popen:
    """A live process recorded in DVC's rwlock as writing (or reading) `paths`."""
    sleeper = subprocess.Popen(["sleep", "60"])
    info = {"pid": sleeper.pid, "cmd": "dvc repro target_eval"}
    entries = {str((root / p).resolve()): info if mode == "write" else [info] for p in paths}
    lock = {"read": {}, "write": {}, mode: entries}
    (root / ".dvc" / "tmp").mkdir(parents=True, exist_ok=True)
    (root / ".dvc" / "tmp" / "rwlock").write_text(json.dumps(lock))
    return sleeper


@pytest.mark.parametrize("mode", ["write", "read"])
def test_outputs_dvc_still_hashes_or_reads_are_busy(data_copy, mode):
    """Before, a runner outside DVC took the output lock the moment the stage's command had
    exited and cleared the outputs while DVC was hashing them (or reading them as deps)."""
    root = data_copy
    params = load_params(root / "params.yaml")
    ctx = StageContext(params, default_paths(root), runner="dagster", pipeline_key="k")
    marker = root / "data" / "target_eval" / "summary.json"
    before = marker.read_bytes()
    sleeper = _hold_like_dvc(root, ["data/target_eval"], mode)
    try:
        with pytest.raises(OutputsBusy) as error:
            run_stage("target_eval", ctx)
        message = str(error.value)
        assert "target_eval" in message and f"pid {sleeper.pid}" in message
        assert f"{mode}s data/target_eval" in message and "dvc repro" in message
        assert marker.read_bytes() == before, "nothing was cleared"
    finally:
        sleeper.kill()
        sleeper.wait()
    # the holder is gone: its entry no longer blocks anyone
    run_stage("target_eval", ctx)
    (root / ".dvc" / "tmp" / "rwlock").unlink()


def test_dvc_repro_and_dagster_on_two_stages_at_once(data_copy, monkeypatch):
    """`dvc repro -f target_eval` while Dagster materialises `unlabeled_images`: both succeed,
    dvc.lock holds both, and Dagster's materialisation carries the dvc.lock entry."""
    root = data_copy
    monkeypatch.setenv("DEPTH_DISTILL_TRACKING", "off")
    params = load_params(root / "params.yaml")
    spec = next(s for s in lineage(params) if s.stage == "unlabeled_images")
    defs = build_definitions(params)
    repro = subprocess.Popen(
        [str(BIN / "dvc"), "repro", "-f", "target_eval"],
        cwd=root,
        env={**tool_env(root), "DEPTH_DISTILL_TRACKING": "off"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    shutil.rmtree(root / "data" / "unlabeled")  # so Dagster's stage has work to do too
    result = dg.materialize(
        [defs.get_assets_def(spec.key)],
        resources=lineage_resources(PipelineResource(root=str(root))),
        instance=dg.DagsterInstance.ephemeral(),
    )
    output = repro.communicate(timeout=600)[0]
    assert repro.returncode == 0, output[-3000:]
    assert result.success
    assert "Unable to acquire lock" not in output
    event = result.asset_materializations_for_node(spec.key)[0]
    state = lock_state(root, spec.dvc_stage)
    assert event.tags[LOCK_TAG] == state.digest
    _dvc_clean(root)


def test_the_parallel_job_runs_each_asset_in_its_own_process():
    params = smoke_params()
    job = build_definitions(params).get_job_def("lineage_parallel")
    assert job.executor_def.name == "multiprocess"
    selected = {key.to_user_string() for key in job.asset_layer.executable_asset_keys}
    assert selected == {spec.key for spec in lineage(params)}
