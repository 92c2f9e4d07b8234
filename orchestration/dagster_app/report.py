"""Tell the Dagster instance what `dvc repro` did, with Dagster's own events.

For every asset whose stage has a dvc.lock entry the instance has not heard of, a runless
materialisation is reported with the metadata an asset run records (the same `stage_metadata`
on the same recorded StageResult: counts, pictures, DVC hashes, the MLflow run), the data
version of its outputs' DVC hashes, the code version of the definitions, and the data versions
of its upstream assets as provenance; then each of its checks is evaluated on the recorded
metrics and reported against that materialisation. Assets are reported upstream first, so a
downstream asset DVC did not rerun after its upstream changed shows as stale, as in `dvc status`.
A dvc.lock entry is reported once: a materialisation (from Dagster or from here) tagged with its
digest means it is known. `depth-distill dagster-report` (the end of `make run`) reports at once;
the `dvc_runs` sensor does the same while `dagster dev` runs, so a plain `dvc repro` shows up too.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster._core.definitions.data_version import (
    CODE_VERSION_TAG,
    DATA_VERSION_IS_USER_PROVIDED_TAG,
    DATA_VERSION_TAG,
    INPUT_DATA_VERSION_TAG_PREFIX,
    INPUT_EVENT_POINTER_TAG_PREFIX,
)
from dagster._core.instance.ref import InstanceRef

from orchestration.dagster_app.checks import checks_for
from orchestration.dagster_app.lineage import AssetStage, code_version, lineage
from orchestration.dagster_app.metadata import stage_metadata
from orchestration.dagster_app.pipeline import PipelineResource
from orchestration.lineage.dvc_lock import LOCK_TAG, LockState, lock_state
from orchestration.lineage.paths import LineagePaths, default_paths
from orchestration.lineage.records import RECORD_SUFFIX, read_record
from orchestration.params.schema import Params, load_params
from orchestration.stages.base import StageResult, read_metrics

log = logging.getLogger(__name__)
RUNNER_TAG = "depth-distill/runner"
# How many of an asset's latest materialisations are searched for a dvc.lock digest.
HISTORY = 100


def instance_for(root: Path) -> dg.DagsterInstance:
    """The instance `make dagster` serves: $DAGSTER_HOME, else <root>/.dagster."""
    home = Path(os.environ.get("DAGSTER_HOME") or Path(root) / ".dagster")
    home.mkdir(parents=True, exist_ok=True)
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home.resolve())))


def recorded_result(paths: LineagePaths, spec: AssetStage) -> StageResult | None:
    """The StageResult the stage recorded (metrics + record), or None if it wrote none."""
    record = read_record(paths.metrics_file(spec.record), paths.root)
    if record is None:
        return None
    return StageResult(
        stage=record["stage"],
        metrics=read_metrics(paths, spec.record),
        outputs=record["outputs"],
        pictures=record["pictures"],
        mlflow_run_id=record["mlflow_run_id"],
        info=record["info"],
    )


def _latest(instance: dg.DagsterInstance, key: str, limit: int = 1):
    return instance.fetch_materializations(dg.AssetKey(key), limit=limit).records


def _known(instance: dg.DagsterInstance, spec: AssetStage, state: LockState) -> bool:
    return any(
        r.asset_materialization.tags.get(LOCK_TAG) == state.digest
        for r in _latest(instance, spec.key, HISTORY)
    )


def _provenance(instance: dg.DagsterInstance, spec: AssetStage, state: LockState, version):
    """Tags Dagster's staleness reads: this output's version and those of its inputs now."""
    tags = {
        DATA_VERSION_TAG: state.data_version,
        DATA_VERSION_IS_USER_PROVIDED_TAG: "true",
        LOCK_TAG: state.digest,
        RUNNER_TAG: "dvc",
    }
    if version is not None:
        tags[CODE_VERSION_TAG] = version
    for dep in spec.deps:
        latest = _latest(instance, dep)
        if latest and latest[0].asset_materialization.tags.get(DATA_VERSION_TAG):
            tags[f"{INPUT_DATA_VERSION_TAG_PREFIX}/{dep}"] = latest[0].asset_materialization.tags[
                DATA_VERSION_TAG
            ]
            tags[f"{INPUT_EVENT_POINTER_TAG_PREFIX}/{dep}"] = str(latest[0].storage_id)
    return tags


def _report_checks(
    instance: dg.DagsterInstance, spec: AssetStage, metrics: dict, params: Params
) -> None:
    target = _latest(instance, spec.key)[0]
    for check in checks_for(spec):
        result = check.result(metrics, params)
        instance.report_runless_asset_event(
            dg.AssetCheckEvaluation(
                asset_key=dg.AssetKey(spec.key),
                check_name=result.check_name,
                passed=result.passed,
                metadata=result.metadata,
                target_materialization_data=AssetCheckEvaluationTargetMaterializationData(
                    storage_id=target.storage_id, run_id=target.run_id, timestamp=target.timestamp
                ),
                severity=result.severity,
                description=result.description,
            )
        )


def report_dvc_runs(instance: dg.DagsterInstance, root: Path, params: Params) -> list[str]:
    """Report each stage DVC recorded since the instance last heard of it; returns the assets."""
    root = Path(root).resolve()
    paths = default_paths(root)
    reported = []
    for spec in lineage(params):
        state = lock_state(root, spec.dvc_stage)
        if state is None or _known(instance, spec, state):
            continue
        result = recorded_result(paths, spec)
        if result is None:  # made before stages recorded their results
            log.warning(f"{spec.key}: no {spec.record}{RECORD_SUFFIX} in metrics/; rerun the stage")
            continue
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                asset_key=spec.key,
                metadata=stage_metadata(result, state.hashes),
                tags=_provenance(instance, spec, state, code_version(spec, params)),
            )
        )
        _report_checks(instance, spec, result.metrics, params)
        reported.append(spec.key)
    return reported


# While a Dagster run is under way its assets commit to dvc.lock before their materialisation is
# stored; the sensor waits for it to finish rather than report such a stage as DVC's.
_ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Reports the stages `dvc repro` ran (new dvc.lock entries) as materialisations "
    "of their assets, with their checks' results.",
)
def dvc_runs(context: dg.SensorEvaluationContext, pipeline: PipelineResource):
    if context.instance.get_runs_count(dg.RunsFilter(statuses=_ACTIVE)):
        return dg.SkipReason("a Dagster run is in progress")
    root = Path(pipeline.root)
    reported = report_dvc_runs(context.instance, root, load_params(root / pipeline.params_file))
    return dg.SkipReason(
        f"reported {', '.join(reported)}" if reported else "dvc.lock holds nothing new"
    )
