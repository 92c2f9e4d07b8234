"""After a smoke `dvc repro`, `depth-distill dagster-report` makes Dagster's instance tell the
same story: every asset materialised with DVC's hashes, the metadata an asset run records, the
same MLflow runs and the checks' results; nothing reported twice; stale where DVC is."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.definitions.data_version import (
    DATA_VERSION_TAG,
    CachingStaleStatusResolver,
    StaleStatus,
)
from dagster._core.loader import LoadingContextForTest

from orchestration.dagster_app.checks import checks_for
from orchestration.dagster_app.definitions import (
    PipelineResource,
    build_definitions,
    lineage_resources,
)
from orchestration.dagster_app.lineage import lineage
from orchestration.dagster_app.report import dvc_runs, instance_for
from orchestration.lineage.dvc_lock import lock_state
from orchestration.params.schema import load_params
from tests.orchestration.conftest import BIN, make_project_copy, run

pytestmark = pytest.mark.slow

MODEL_STAGES = ("teacher", "student")


@pytest.fixture(scope="module")
def lineage_run(tmp_path_factory):
    """One smoke lineage under `dvc repro`, reported twice; (root, first and second output)."""
    root = make_project_copy(tmp_path_factory.mktemp("report") / "project")
    run([str(BIN / "dvc"), "repro"], root, timeout=900)
    first = run([str(BIN / "depth-distill"), "dagster-report"], root).stdout
    second = run([str(BIN / "depth-distill"), "dagster-report"], root).stdout
    return root, first, second


def _instance(root: Path, monkeypatch) -> dg.DagsterInstance:
    """The copy's instance (what `make dagster` would serve there); its MLflow store is its own."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return instance_for(root)


def _latest(instance, key: str):
    records = instance.fetch_materializations(dg.AssetKey(key), limit=1).records
    assert records, f"{key}: never materialised"
    return records[0]


def _statuses(instance, root: Path, params) -> dict[str, StaleStatus]:
    defs = build_definitions(params, PipelineResource(root=str(root)))
    resolver = CachingStaleStatusResolver(
        instance, defs.resolve_asset_graph(), LoadingContextForTest(instance)
    )
    return {spec.key: resolver.get_status(dg.AssetKey(spec.key)) for spec in lineage(params)}


def test_every_asset_is_materialised_with_the_hashes_in_dvc_lock(lineage_run, monkeypatch):
    root, first, second = lineage_run
    params = load_params(root / "params.yaml")
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    specs = lineage(params)
    assert all(f"  {spec.key}" in first for spec in specs), first
    assert "0 asset(s) reported" in second, "the same dvc.lock state was reported twice"
    with _instance(root, monkeypatch) as instance:
        for spec in specs:
            record = _latest(instance, spec.key)
            event = record.asset_materialization
            outs = {out["path"]: out["md5"] for out in lock[spec.dvc_stage]["outs"]}
            for path, md5 in outs.items():
                assert event.metadata[f"dvc_md5/{path}"].value == md5, (spec.key, path)
            assert event.tags[DATA_VERSION_TAG] == lock_state(root, spec.dvc_stage).data_version
            assert "metrics" in event.metadata and "stage_seconds" in event.metadata
            metrics = json.loads((root / f"metrics/{spec.record}.json").read_text())
            if spec.stage in MODEL_STAGES:
                assert event.metadata["mlflow_run_id"].value == metrics["mlflow_run_id"]
                assert event.metadata["checkpoint_md5"].value == metrics["checkpoint_md5"]
                assert "pictures" in event.metadata and "mlflow_run" in event.metadata
            if spec.stage == "labeled_data":
                assert "base64" in event.metadata["pictures"].value, "the preview is inline"
            if spec.stage == "agreement":
                assert "summary" in event.metadata


def test_the_checks_results_are_reported_against_those_materialisations(lineage_run, monkeypatch):
    root, _, _ = lineage_run
    params = load_params(root / "params.yaml")
    with _instance(root, monkeypatch) as instance:
        for spec in lineage(params):
            target = _latest(instance, spec.key)
            metrics = json.loads((root / f"metrics/{spec.record}.json").read_text())
            for check in checks_for(spec):
                key = dg.AssetCheckKey(dg.AssetKey(spec.key), check.name)
                found = instance.get_latest_asset_check_evaluation_record(key)
                assert found is not None, f"{spec.key}: check {check.name} not reported"
                evaluation = found.event.dagster_event.event_specific_data
                assert evaluation.passed == check.result(metrics, params).passed
                assert evaluation.target_materialization_data.storage_id == target.storage_id
        integrity = [
            instance.get_latest_asset_check_evaluation_record(
                dg.AssetCheckKey(dg.AssetKey(key), name)
            )
            for key, name in (("pseudo_labels", "no_nan"), ("labeled_data", "depth_mostly_valid"))
        ]
        assert all(r.event.dagster_event.event_specific_data.passed for r in integrity)


def test_everything_dvc_made_is_fresh_and_a_params_change_makes_the_asset_stale(
    lineage_run, monkeypatch
):
    root, _, _ = lineage_run
    params = load_params(root / "params.yaml")
    with _instance(root, monkeypatch) as instance:
        statuses = _statuses(instance, root, params)
        assert set(statuses.values()) == {StaleStatus.FRESH}, statuses
        seed = params.agreement.pairs.seed + 1
        changed = params.model_copy(
            update={
                "agreement": params.agreement.model_copy(
                    update={"pairs": params.agreement.pairs.model_copy(update={"seed": seed})}
                )
            }
        )
        statuses = _statuses(instance, root, changed)
        assert statuses.pop("expert_agreement_report") == StaleStatus.STALE
        assert set(statuses.values()) == {StaleStatus.FRESH}, statuses


def test_a_dagster_run_carries_the_same_metadata_and_is_not_reported_again(
    lineage_run, monkeypatch
):
    root, _, _ = lineage_run
    params = load_params(root / "params.yaml")
    with _instance(root, monkeypatch) as instance:
        dvc_made = _latest(instance, "teacher_checkpoint").asset_materialization
        defs = build_definitions(params, PipelineResource(root=str(root)))
        result = dg.materialize(
            [*defs.assets, *defs.asset_checks],
            selection=dg.AssetSelection.assets("teacher_checkpoint"),
            resources=lineage_resources(PipelineResource(root=str(root))),
            instance=instance,
        )
        assert result.success
        dagster_made = _latest(instance, "teacher_checkpoint").asset_materialization
        assert set(dagster_made.metadata) == set(dvc_made.metadata)
        assert dagster_made.metadata["mlflow_run_id"] != dvc_made.metadata["mlflow_run_id"]
        checks = {e.check_name for e in result.get_asset_check_evaluations()}
        assert checks == {"not_inverted", "beats_row_prior"}, "the asset's checks ran after it"
    again = run([str(BIN / "depth-distill"), "dagster-report"], root).stdout
    assert "0 asset(s) reported" in again, "a stage Dagster committed was reported as DVC's"


def test_the_checks_job_reevaluates_recorded_outputs_alone(lineage_run, monkeypatch):
    root, _, _ = lineage_run
    params = load_params(root / "params.yaml")
    with _instance(root, monkeypatch) as instance:
        before = {spec.key: _latest(instance, spec.key).storage_id for spec in lineage(params)}
        defs = build_definitions(params, PipelineResource(root=str(root)))
        result = defs.resolve_job_def("checks").execute_in_process(instance=instance)
        assert result.success
        expected = {(s.key, c.name) for s in lineage(params) for c in checks_for(s)}
        ran = {
            (e.asset_key.to_user_string(), e.check_name)
            for e in result.get_asset_check_evaluations()
        }
        assert ran == expected
        after = {spec.key: _latest(instance, spec.key).storage_id for spec in lineage(params)}
        assert after == before, "a check run materialised something"


def test_the_sensor_reports_a_stage_dvc_reran_and_its_downstream_turns_stale(
    lineage_run, monkeypatch
):
    """Last in the module: it changes the copy's params and retrains its teacher."""
    root, _, _ = lineage_run
    pipeline = PipelineResource(root=str(root))
    with _instance(root, monkeypatch) as instance:
        context = dg.build_sensor_context(instance=instance, resources={"pipeline": pipeline})
        assert "nothing new" in dvc_runs(context).skip_message
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["teacher"]["epochs"] += 1
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    run([str(BIN / "dvc"), "repro", "teacher"], root, timeout=600)
    params = load_params(root / "params.yaml")
    with _instance(root, monkeypatch) as instance:
        context = dg.build_sensor_context(instance=instance, resources={"pipeline": pipeline})
        assert dvc_runs(context).skip_message == "reported teacher_checkpoint"
        statuses = _statuses(instance, root, params)
    assert statuses["teacher_checkpoint"] == StaleStatus.FRESH
    assert statuses["pseudo_labels"] == StaleStatus.STALE, "its teacher changed, as dvc status says"
    status = json.loads(run([str(BIN / "dvc"), "status", "--json"], root).stdout or "{}")
    assert "pseudo_labels" in status and "teacher" not in status
    again = run([str(BIN / "depth-distill"), "dagster-report"], root).stdout
    assert "0 asset(s) reported" in again
