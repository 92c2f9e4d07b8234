"""Dagster definitions: the lineage as software-defined assets.

labeled_data ─► teacher_checkpoint ─► pseudo_labels ─► student_checkpoint_<name> ─► expert_agreement_report
                                                                     ├─► student_onnx_<name>
                                                                     └─► zeroshot_report
unlabeled_images ───────────────────────┘
target_eval_set (held-out ground truth) ─ validation of every model and the agreement report

teacher_checkpoint is trained here, or is a teacher you already have (`teacher.source`:
checkpoint | transformers); its description, tags and metadata say which.

Each asset calls the same stage function that `dvc repro` runs (orchestration.stages.base), then, on
the default lineage, `dvc commit`s the stage so DVC and Dagster agree on what is up to date; its
data version is the DVC hash of its outputs and its code version what DVC reruns it for (code
deps, params), so what `dvc status` calls changed shows as stale. Runs of `dvc repro` reach the
same instance through `depth-distill dagster-report` and the `dvc_runs` sensor
(orchestration.dagster_app.report). Checks are standalone (orchestration.dagster_app.checks): the
`checks` job re-runs them on the files there. Launchpad runs that override params (typed:
orchestration.dagster_app.config) are experiments: they write under experiments/<name>/.
"""

from typing import NamedTuple

import dagster as dg
from dagster import AssetExecutionContext

from orchestration.dagster_app.checks import asset_checks
from orchestration.dagster_app.lineage import AssetStage, code_version, lineage
from orchestration.dagster_app.metadata import stage_metadata
from orchestration.dagster_app.pipeline import REPO_ROOT, PipelineResource
from orchestration.dagster_app.pipes import run_through_pipes
from orchestration.dagster_app.report import dvc_runs
from orchestration.lineage.dvc_lock import LOCK_TAG, LockState
from orchestration.lineage.dvc_sync import DvcError
from orchestration.lineage.stage_id import StageId
from orchestration.params.schema import Params, TeacherParams, load_params
from orchestration.stages import registry
from orchestration.stages.base import StageContext, StageResult
from orchestration.stages.registry import LAUNCHED_STAGES


def run_and_commit(
    context: AssetExecutionContext, pipeline: PipelineResource, stage: StageId
) -> tuple[StageResult, LockState | None]:
    """Run the stage in this process; on the default lineage, record it in DVC and return what
    dvc.lock holds."""
    paths = pipeline.paths(context.run_id)
    ctx = StageContext(
        params=pipeline.params(),
        paths=paths,
        runner="dagster",
        pipeline_key=f"dagster-{context.run_id}",
        experiment=pipeline.experiment_name(context.run_id),
    )
    context.log.info(f"stage {stage.dvc} -> {paths.root}")
    try:
        return registry.run_and_commit(stage, ctx, pipeline.commit_to_dvc)
    except DvcError as exc:  # DVC and Dagster would disagree: not a success
        raise dg.Failure(description=str(exc)) from exc


def _materialize(
    context: AssetExecutionContext, pipeline: PipelineResource, spec: AssetStage
) -> dg.MaterializeResult:
    """The stage's outputs as a materialisation; one DVC has recorded is versioned by its
    outputs' DVC hashes and tagged with its dvc.lock entry (so it is never reported again)."""
    result, state = run_and_commit(context, pipeline, spec.id)
    return dg.MaterializeResult(
        metadata=stage_metadata(result, state.hashes if state else None),
        data_version=dg.DataVersion(state.data_version) if state else None,
        tags={LOCK_TAG: state.digest} if state else None,
    )


DATA_KINDS = {"numpy", "dvc"}
MODEL_KINDS = {"pytorch", "mlflow", "dvc"}

TEACHER_DESCRIPTIONS = {
    "train": "The largest model, trained on labeled data only with SSI + gradient matching loss.",
    "checkpoint": "An existing depth-distill checkpoint ({path}), used as it is: copied into "
    "models/teacher and evaluated like a trained teacher; nothing is trained.",
    "transformers": "A Hugging Face depth-estimation model ({path}), used as it is: copied into "
    "models/teacher and evaluated like a trained teacher; nothing is trained.",
}


def _teacher_description(teacher: TeacherParams | None) -> str:
    source = teacher.source if teacher is not None else "train"
    return TEACHER_DESCRIPTIONS[source].format(path=teacher.path if teacher else None)


class Presentation(NamedTuple):
    """How an asset shows in the UI; `{name}` in the description is the student's."""

    group: str
    kinds: set[str]
    description: str


PRESENTATION = {
    "labeled_data": Presentation(
        "data",
        DATA_KINDS,
        description=(
            "RGB + dense depth for the teacher: procedurally rendered scenes (or a user's "
            "RGB-D folder), split into train and a held-out validation split."
        ),
    ),
    "unlabeled_images": Presentation(
        "data",
        DATA_KINDS,
        description=(
            "RGB only, from a different visual domain (photo textures, camera effects) or a "
            "user's folder."
        ),
    ),
    "target_eval": Presentation(
        "data",
        DATA_KINDS,
        description=(
            "Held-out ground truth of the target domain: evaluation only, never trained on."
        ),
    ),
    "teacher": Presentation("models", MODEL_KINDS, description=""),
    "pseudo_labels": Presentation(
        "models",
        {"pytorch", "dvc"},
        description="The teacher's disparity on every unlabeled image, sharded like the images.",
    ),
    "student": Presentation(
        "models",
        MODEL_KINDS,
        description=(
            "Student '{name}': re-initialised, trained on labeled data + pseudo-labels with "
            "strong perturbations, CutMix and top-10% loss trimming."
        ),
    ),
    "export": Presentation(
        "deployment",
        {"onnx", "mlflow", "dvc"},
        description=(
            "Student '{name}' as one ONNX file (dynamic batch, height and width; "
            "normalisation and padding inside), parity-checked against the checkpoint and "
            "timed on the CPU."
        ),
    ),
    "agreement": Presentation(
        "reports",
        {"pytorch", "mlflow", "dvc"},
        description=(
            "Four experts vote on point pairs; disagreements are flagged and queued for review."
        ),
    ),
    "zeroshot_report": Presentation(
        "reports",
        {"pytorch", "mlflow", "dvc"},
        description=(
            "The teacher and every student on the zero-shot benchmarks of zeroshot.roots "
            "(NYUv2, KITTI, DIODE, ETH3D, Sintel, ScanNet, DA-2K), scored as the papers do, "
            "beside the published Depth Anything V2 figures; nothing runs when none is set."
        ),
    ),
}


def _presentation(spec: AssetStage, params: Params | None) -> dict:
    """Group, kinds, description and tags of an asset, by the stage it runs; the teacher's
    description and tags name its source."""
    group, kinds, description = PRESENTATION[spec.stage]
    tags = None
    if spec.stage == "teacher":
        description = _teacher_description(params.teacher if params else None)
        tags = {"teacher_source": params.teacher.source if params else "train"}
    return {
        "group_name": group,
        "kinds": kinds,
        "description": description.format(name=spec.student),
        "tags": tags,
    }


def _stage_asset(spec: AssetStage, params: Params | None) -> dg.AssetsDefinition:
    if spec.stage in LAUNCHED_STAGES:
        return _launched_asset(spec, params)

    @dg.asset(
        name=spec.key,
        deps=list(spec.deps),
        code_version=code_version(spec, params),
        **_presentation(spec, params),
    )
    def _asset(context: AssetExecutionContext, pipeline: PipelineResource):
        return _materialize(context, pipeline, spec)

    return _asset


def _launched_asset(spec: AssetStage, params: Params | None) -> dg.AssetsDefinition:
    """A heavy stage: `depth-distill stage NAME` through the `pipes` client, so it runs under
    DEPTH_DISTILL_LAUNCHER here, or on other compute with another Pipes client."""

    @dg.asset(
        name=spec.key,
        deps=list(spec.deps),
        code_version=code_version(spec, params),
        **_presentation(spec, params),
    )
    def _asset(
        context: AssetExecutionContext,
        pipeline: PipelineResource,
        pipes: dg.PipesSubprocessClient,
    ):
        return run_through_pipes(context, pipeline, pipes, spec.id)

    return _asset


def _default_params() -> Params | None:
    try:
        return load_params(REPO_ROOT / "params.yaml")
    except Exception:  # noqa: BLE001 - the UI must still load; the run reports the error
        return None


def lineage_resources(pipeline: PipelineResource | None = None) -> dict:
    """The resources every asset needs: where the lineage lives, and the Pipes client that
    launches the heavy stages (swap it to send them to other compute)."""
    return {"pipeline": pipeline or PipelineResource(), "pipes": dg.PipesSubprocessClient()}


def build_definitions(
    params: Params | None = None, pipeline: PipelineResource | None = None
) -> dg.Definitions:
    """The lineage's assets and checks for `params` (default: params.yaml) on `pipeline`."""
    params = params if params is not None else _default_params()
    specs = lineage(params)
    lineage_job = dg.define_asset_job(
        "lineage",
        selection=dg.AssetSelection.all(),
        description="The whole lineage, data to agreement report, each asset checked after it.",
    )
    parallel_job = dg.define_asset_job(
        "lineage_parallel",
        selection=dg.AssetSelection.all(),
        executor_def=dg.multiprocess_executor,
        description="The whole lineage with independent assets at once, each in its own "
        "process (the data stages together, then every student): set "
        "`execution.config.max_concurrent` to what the machine holds.",
    )
    checks_job = dg.define_asset_job(
        "checks",
        selection=dg.AssetSelection.all_asset_checks(),
        description="Every asset check on the outputs already there (nothing is materialised).",
    )
    return dg.Definitions(
        assets=[_stage_asset(spec, params) for spec in specs],
        asset_checks=[check for spec in specs for check in asset_checks(spec)],
        jobs=[lineage_job, parallel_job, checks_job],
        sensors=[dvc_runs],
        resources=lineage_resources(pipeline),
        executor=dg.in_process_executor,
    )


defs = build_definitions()
