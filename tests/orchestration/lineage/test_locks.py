"""One writer at a time: two runners of one stage never write its outputs together."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

from orchestration.dagster_app import definitions
from orchestration.lineage.dvc_sync import DvcError
from orchestration.lineage.locks import OutputsBusy, output_lock
from orchestration.lineage.paths import default_paths
from orchestration.lineage.stage_id import StageId
from orchestration.stages import registry
from orchestration.stages.base import StageContext
from orchestration.stages.registry import run_stage
from tests.helpers import REPO, smoke_params

_HOLD = """
import sys, time
from pathlib import Path
from orchestration.lineage.locks import output_lock
with output_lock(Path(sys.argv[1]), "teacher", "dvc"):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def other_runner(tmp_path):
    """A second process holding the teacher's lock, as `dvc repro` training the teacher."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait()


def test_the_second_runner_fails_at_once_naming_stage_and_holder(tmp_path, other_runner):
    out = tmp_path / "models" / "teacher"
    out.mkdir(parents=True)
    (out / "model.safetensors").write_bytes(b"being trained")
    ctx = StageContext(smoke_params(), default_paths(tmp_path), runner="dagster")
    with pytest.raises(OutputsBusy) as error:
        run_stage("teacher", ctx)
    message = str(error.value)
    assert "stage teacher" in message and f"pid {other_runner.pid}" in message
    assert "runner dvc" in message
    assert (out / "model.safetensors").read_bytes() == b"being trained"


def test_a_killed_holder_leaves_no_stale_lock(tmp_path, other_runner):
    other_runner.kill()
    other_runner.wait()
    with output_lock(tmp_path, "teacher", "cli"):
        pass


def test_the_lock_is_reentrant_in_one_process_and_per_stage(tmp_path):
    with output_lock(tmp_path, "teacher", "dagster"):
        with output_lock(tmp_path, "teacher", "dagster"):
            pass
        with output_lock(tmp_path, "pseudo_labels", "dagster"):
            pass


def test_a_failed_dvc_commit_fails_the_asset_with_dvcs_reason(tmp_path, monkeypatch):
    import dagster as dg

    (tmp_path / ".dvc").mkdir()
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.setattr(registry, "run_stage", lambda *a, **k: SimpleNamespace())

    def failing_commit(root, stage):
        raise DvcError(f"dvc commit {stage} failed (exit status 255): not in cache")

    monkeypatch.setattr(registry, "commit_stage", failing_commit)
    pipeline = SimpleNamespace(
        root=str(tmp_path),
        commit_to_dvc=True,
        params=smoke_params,
        paths=lambda run_id: default_paths(tmp_path),
        experiment_name=lambda run_id: None,
    )
    context = SimpleNamespace(run_id="r1", log=SimpleNamespace(info=lambda message: None))
    with pytest.raises(dg.Failure, match="not in cache"):
        definitions.run_and_commit(context, pipeline, StageId("teacher"))
