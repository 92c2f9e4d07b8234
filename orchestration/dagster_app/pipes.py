"""Heavy stages through Dagster Pipes: the asset launches `depth-distill stage NAME`, which runs
under `DEPTH_DISTILL_LAUNCHER` (e.g. torchrun) and reports its materialisation back.

The asset side (`run_through_pipes`) hands the command to the `pipes` resource, a
`dagster.PipesSubprocessClient` by default; another Pipes client (Kubernetes, Databricks, a
Slurm-submitting subprocess) sends the same command elsewhere without touching stage code. The
command side (`report_materialization`) runs in rank 0 of the stage: the same metadata an
in-process asset carries (`stage_metadata`), the DVC hash as data version, and the digest of the
dvc.lock entry, which the asset turns back into the tag the `dvc_runs` sensor reads.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import dagster as dg

from orchestration.dagster_app.config import override_items
from orchestration.dagster_app.metadata import stage_metadata
from orchestration.dagster_app.pipeline import PipelineResource
from orchestration.lineage.dvc_lock import LOCK_TAG, LockState
from orchestration.lineage.stage_id import StageId
from orchestration.stages.base import StageResult

# Metadata entry carrying the dvc.lock digest from the command to the asset (then a tag).
LOCK_DIGEST = "dvc_lock_digest"
PIPES_CONTEXT_ENV = "DAGSTER_PIPES_CONTEXT"  # set by every Pipes client in the launched process

_PIPES_TYPES = {
    dg.FloatMetadataValue: "float",
    dg.IntMetadataValue: "int",
    dg.JsonMetadataValue: "json",
    dg.PathMetadataValue: "path",
    dg.UrlMetadataValue: "url",
    dg.MarkdownMetadataValue: "md",
    dg.TextMetadataValue: "text",
    dg.BoolMetadataValue: "bool",
}


def pipes_metadata(metadata: dict) -> dict[str, dict]:
    """Dagster metadata values as Pipes sends them: {"raw_value": ..., "type": ...}."""
    out = {}
    for key, value in metadata.items():
        if isinstance(value, bool):
            out[key] = {"raw_value": value, "type": "bool"}
        elif isinstance(value, str):
            out[key] = {"raw_value": value, "type": "text"}
        else:
            out[key] = {"raw_value": value.value, "type": _PIPES_TYPES[type(value)]}
    return out


def in_pipes_process() -> bool:
    return bool(os.environ.get(PIPES_CONTEXT_ENV))


def report_materialization(result: StageResult, state: LockState | None) -> bool:
    """Report the stage's materialisation to the Dagster run that launched it; False (nothing
    sent) when no Dagster run did, e.g. under `dvc repro`."""
    if not in_pipes_process():
        return False
    from dagster_pipes import open_dagster_pipes

    metadata = stage_metadata(result, state.hashes if state else None)
    if state:
        metadata[LOCK_DIGEST] = state.digest
    with open_dagster_pipes() as pipes:
        pipes.report_asset_materialization(
            metadata=pipes_metadata(metadata),
            data_version=state.data_version if state else None,
        )
    return True


def stage_command(stage: StageId, pipeline: PipelineResource, run_id: str) -> list[str]:
    """`depth-distill stage NAME ...` with the params this Dagster run uses (the same profile
    and overrides, so relative paths resolve as in process)."""
    command = [sys.executable, "-m", "orchestration.cli", "stage", stage.stage]
    if stage.student:
        command += ["--student", stage.student]
    command += [
        "--root",
        str(pipeline.root),
        "--params",
        str(Path(pipeline.root) / pipeline.params_file),
    ]
    if pipeline.profile:
        command += ["--profile", pipeline.profile]
    for item in override_items(pipeline.overrides):
        command += ["--set", item]
    command += ["--runner", "dagster", "--pipeline-key", f"dagster-{run_id}"]
    experiment = pipeline.experiment_name(run_id)
    if experiment:
        command += ["--experiment", experiment]
    if not pipeline.commit_to_dvc:
        command.append("--no-dvc-commit")
    return command


def run_through_pipes(
    context: dg.AssetExecutionContext,
    pipeline: PipelineResource,
    pipes: dg.PipesSubprocessClient,
    stage: StageId,
) -> dg.MaterializeResult:
    """Launch the stage's command through the `pipes` client and return what it reported."""
    command = stage_command(stage, pipeline, context.run_id)
    context.log.info(f"stage {stage.dvc} through Dagster Pipes: {' '.join(command)}")
    reported = pipes.run(command=command, context=context, cwd=str(pipeline.root))
    result = reported.get_materialize_result()
    metadata = dict(result.metadata or {})
    digest = metadata.pop(LOCK_DIGEST, None)
    return dg.MaterializeResult(
        metadata=metadata,
        data_version=result.data_version,
        tags={LOCK_TAG: digest.value} if digest is not None else None,
    )
