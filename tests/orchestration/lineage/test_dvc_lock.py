"""dvc.lock entries as Dagster versions, and the report of one, on hand-made files."""

from __future__ import annotations

import json
import logging

import dagster as dg
import yaml

from orchestration.dagster_app.report import report_dvc_runs
from orchestration.lineage.dvc_lock import LOCK_TAG, lock_state
from orchestration.lineage.paths import default_paths
from orchestration.lineage.records import write_record
from orchestration.stages.base import StageResult
from tests.helpers import smoke_params


def _lock(root, target_md5: str, metrics_md5: str = "m1") -> None:
    entry = {
        "cmd": "depth-distill stage target_eval --runner dvc",
        "outs": [
            {"path": "data/target_eval", "md5": target_md5},
            {"path": "metrics/target_eval.json", "md5": metrics_md5},
        ],
    }
    (root / "dvc.lock").write_text(
        yaml.safe_dump({"schema": "2.0", "stages": {"target_eval": entry}})
    )


def _record(root) -> None:
    paths = default_paths(root)
    metrics = {"n_images": 16, "valid_fraction": 0.8, "stage_seconds": 1.5}
    paths.metrics_file("target_eval").parent.mkdir(parents=True)
    paths.metrics_file("target_eval").write_text(json.dumps(metrics))
    result = StageResult("target_eval", metrics, [paths.out("data/target_eval")])
    write_record(paths.metrics_file("target_eval"), paths.root, result)


def test_the_data_version_follows_the_outputs_not_the_metrics(tmp_path):
    _lock(tmp_path, "a.dir")
    first = lock_state(tmp_path, "target_eval")
    _lock(tmp_path, "a.dir", metrics_md5="m2")
    rerun = lock_state(tmp_path, "target_eval")
    assert rerun.data_version == first.data_version, "same outputs, same version"
    assert rerun.digest != first.digest, "another run of the stage"
    _lock(tmp_path, "b.dir")
    assert lock_state(tmp_path, "target_eval").data_version != first.data_version
    assert lock_state(tmp_path, "teacher") is None


def test_a_lock_entry_is_reported_once_and_a_new_one_again(tmp_path):
    _lock(tmp_path, "a.dir")
    _record(tmp_path)
    params = smoke_params()
    with dg.DagsterInstance.ephemeral() as instance:
        assert report_dvc_runs(instance, tmp_path, params) == ["target_eval_set"]
        assert report_dvc_runs(instance, tmp_path, params) == []
        event = instance.get_latest_materialization_event(dg.AssetKey("target_eval_set"))
        materialization = event.asset_materialization
        assert materialization.metadata["n_images"].value == 16
        assert materialization.metadata["dvc_md5/data/target_eval"].value == "a.dir"
        assert materialization.metadata["path/target_eval"].value == str(
            tmp_path.resolve() / "data/target_eval"
        )
        assert materialization.tags[LOCK_TAG] == lock_state(tmp_path, "target_eval").digest
        _lock(tmp_path, "b.dir")
        assert report_dvc_runs(instance, tmp_path, params) == ["target_eval_set"]


def test_a_stage_without_a_record_is_skipped_with_a_warning(tmp_path, caplog):
    _lock(tmp_path, "a.dir")
    with dg.DagsterInstance.ephemeral() as instance, caplog.at_level(logging.WARNING):
        assert report_dvc_runs(instance, tmp_path, smoke_params()) == []
    assert "target_eval.result.json" in caplog.text
