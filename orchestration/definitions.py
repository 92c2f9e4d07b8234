"""Dagster definitions: the lineage as software-defined assets.

labeled_data ─► teacher_checkpoint ─► pseudo_labels ─► student_checkpoint_<name> ─► expert_agreement_report
                                                                     └─► student_onnx_<name>
unlabeled_images ───────────────────────┘
target_eval_set (held-out ground truth) ─ validation of every model and the agreement report

teacher_checkpoint is trained here, or is a teacher you already have (`teacher.source`:
checkpoint | transformers); its description, tags and metadata say which.

Each asset calls the same stage function that `dvc repro` runs (orchestration.stages), then, on
the default lineage, `dvc commit`s the stage so DVC and Dagster agree on what is up to date.
Launchpad runs that override params are experiments: they write under experiments/<name>/.
"""

import os
from pathlib import Path

import dagster as dg
from dagster import AssetExecutionContext

from orchestration.config import Params, TeacherParams, load_params
from orchestration.dagster_metadata import stage_metadata
from orchestration.dvc_sync import DvcError, commit_stage, is_dvc_repo
from orchestration.layout import Layout, default_layout, experiment_layout
from orchestration.locks import lock_name, output_lock
from orchestration.profiles import profile_params
from orchestration.stages import StageContext, StageResult, run_stage

REPO_ROOT = Path(os.environ.get("DEPTH_DISTILL_ROOT", Path(__file__).resolve().parents[1]))


class PipelineResource(dg.ConfigurableResource):
    """Where the lineage lives and which params it runs with.

    Leave `profile` and `overrides` empty to materialise the default, DVC-tracked lineage
    (params.yaml). A `profile` (a file of profiles/, e.g. "smoke") runs that profile's merge
    instead. Params that differ from params.yaml (a profile, an override such as
    ["teacher.epochs=2"]) or an explicit `experiment` name make the run an experiment: outputs
    go to experiments/<name>/ and MLflow runs are tagged with it.
    """

    root: str = str(REPO_ROOT)
    params_file: str = "params.yaml"
    profile: str = ""
    overrides: list[str] = []  # noqa: RUF012 - pydantic copies field defaults
    experiment: str = ""
    commit_to_dvc: bool = True

    def params(self) -> Params:
        if self.profile:
            return profile_params(Path(self.root), self.profile, list(self.overrides))
        return load_params(Path(self.root) / self.params_file, list(self.overrides))

    def experiment_name(self, run_id: str) -> str | None:
        if self.experiment:
            return self.experiment
        return f"dagster-{run_id[:8]}" if self._differs_from_params_file() else None

    def _differs_from_params_file(self) -> bool:
        if self.overrides:
            return True
        return bool(self.profile) and self.params() != load_params(
            Path(self.root) / self.params_file
        )

    def layout(self, run_id: str) -> Layout:
        name = self.experiment_name(run_id)
        root = Path(self.root)
        return experiment_layout(root, name) if name else default_layout(root)


def _run(
    context: AssetExecutionContext,
    pipeline: PipelineResource,
    stage: str,
    dvc_stage: str,
    student: str | None = None,
) -> tuple[StageResult, dict]:
    layout = pipeline.layout(context.run_id)
    ctx = StageContext(
        params=pipeline.params(),
        layout=layout,
        runner="dagster",
        pipeline_key=f"dagster-{context.run_id}",
        experiment=pipeline.experiment_name(context.run_id),
    )
    context.log.info(f"stage {stage}{' ' + student if student else ''} -> {layout.root}")
    hashes: dict[str, str] = {}
    root = Path(pipeline.root)
    # The outputs stay locked until DVC has recorded them: no other runner writes in between.
    with output_lock(layout.root, lock_name(stage, student), "dagster"):
        result = run_stage(stage, ctx, student=student)
        if not layout.is_experiment and pipeline.commit_to_dvc and is_dvc_repo(root):
            try:
                hashes = commit_stage(root, dvc_stage)
            except DvcError as exc:  # DVC and Dagster would disagree: not a success
                raise dg.Failure(description=str(exc)) from exc
    return result, stage_metadata(result, hashes)


def _check(
    name: str, passed: bool, description: str, quality: bool = False, **metadata
) -> dg.AssetCheckResult:
    """Integrity checks are errors; model-quality checks warn (a smoke-size model is untrained)."""
    return dg.AssetCheckResult(
        check_name=name,
        passed=bool(passed),
        description=description,
        severity=dg.AssetCheckSeverity.WARN if quality else dg.AssetCheckSeverity.ERROR,
        metadata={k: v for k, v in metadata.items() if v is not None},
    )


DATA_KINDS = {"numpy", "dvc"}
MODEL_KINDS = {"pytorch", "mlflow", "dvc"}


@dg.asset(
    group_name="data",
    kinds=DATA_KINDS,
    check_specs=[dg.AssetCheckSpec("depth_mostly_valid", asset="labeled_data")],
)
def labeled_data(context: AssetExecutionContext, pipeline: PipelineResource):
    """RGB + dense depth for the teacher: procedurally rendered scenes (or a user's RGB-D folder),
    split into train and a held-out validation split."""
    result, metadata = _run(context, pipeline, "labeled_data", "labeled_data")
    valid = result.metrics.get("valid_fraction") or 0.0
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            _check(
                "depth_mostly_valid",
                valid >= 0.3,
                "at least 30% of pixels carry valid depth",
                valid_fraction=float(valid),
            )
        ],
    )


@dg.asset(group_name="data", kinds=DATA_KINDS)
def unlabeled_images(context: AssetExecutionContext, pipeline: PipelineResource):
    """RGB only, from a different visual domain (photo textures, camera effects) or a user's folder."""
    _, metadata = _run(context, pipeline, "unlabeled_images", "unlabeled_images")
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(group_name="data", kinds=DATA_KINDS)
def target_eval_set(context: AssetExecutionContext, pipeline: PipelineResource):
    """Held-out ground truth of the target domain: evaluation only, never trained on."""
    _, metadata = _run(context, pipeline, "target_eval", "target_eval")
    return dg.MaterializeResult(metadata=metadata)


def _model_checks(metrics: dict, domain: str) -> list[dg.AssetCheckResult]:
    """Teachers are held to their own (synthetic) validation split, students to the target domain."""
    ours = metrics.get(f"val/{domain}/pair_accuracy")
    base = metrics.get(f"baseline/{domain}/pair_accuracy")
    inverted = metrics.get(f"val/{domain}/inverted_fraction")
    return [
        _check(
            "not_inverted",
            inverted is not None and inverted < 0.5,
            "predictions are not inverted depth (lstsq scale > 0 on most images)",
            quality=True,
            inverted_fraction=inverted,
        ),
        _check(
            "beats_row_prior",
            ours is not None and base is not None and ours > base,
            f"raw pair accuracy on the {domain} set beats 'lower in the image is nearer'",
            quality=True,
            pair_accuracy=ours,
            baseline_pair_accuracy=base,
        ),
    ]


def _model_check_specs(asset_key: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec("not_inverted", asset=asset_key),
        dg.AssetCheckSpec("beats_row_prior", asset=asset_key),
    ]


TEACHER_DESCRIPTIONS = {
    "train": "The largest model, trained on labeled data only with SSI + gradient matching loss.",
    "checkpoint": "An existing depth-distill checkpoint ({path}), used as it is: copied into "
    "models/teacher and evaluated like a trained teacher; nothing is trained.",
    "transformers": "A Hugging Face depth-estimation model ({path}), used as it is: copied into "
    "models/teacher and evaluated like a trained teacher; nothing is trained.",
}


def _teacher_asset(teacher: TeacherParams | None) -> dg.AssetsDefinition:
    """The teacher asset; its description and tags name the source read from params.yaml."""
    source = teacher.source if teacher is not None else "train"
    path = teacher.path if teacher is not None else None

    @dg.asset(
        name="teacher_checkpoint",
        group_name="models",
        kinds=MODEL_KINDS,
        deps=[labeled_data, target_eval_set],
        check_specs=_model_check_specs("teacher_checkpoint"),
        description=TEACHER_DESCRIPTIONS[source].format(path=path),
        tags={"teacher_source": source},
    )
    def _teacher(context: AssetExecutionContext, pipeline: PipelineResource):
        result, metadata = _run(context, pipeline, "teacher", "teacher")
        return dg.MaterializeResult(
            metadata=metadata, check_results=_model_checks(result.metrics, "synthetic")
        )

    return _teacher


@dg.asset(
    group_name="models",
    kinds={"pytorch", "dvc"},
    deps=["teacher_checkpoint", unlabeled_images],
    check_specs=[dg.AssetCheckSpec("no_nan", asset="pseudo_labels")],
)
def pseudo_labels(context: AssetExecutionContext, pipeline: PipelineResource):
    """The teacher's disparity on every unlabeled image, sharded like the images."""
    result, metadata = _run(context, pipeline, "pseudo_labels", "pseudo_labels")
    nan_count = int(result.metrics.get("nan_count", 0) or 0)
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            _check(
                "no_nan",
                nan_count == 0,
                "no NaN/inf pixel in any pseudo-label",
                nan_count=nan_count,
            )
        ],
    )


def _student_asset(name: str) -> dg.AssetsDefinition:
    key = f"student_checkpoint_{name}"

    @dg.asset(
        name=key,
        group_name="models",
        kinds=MODEL_KINDS,
        deps=[labeled_data, pseudo_labels, unlabeled_images, target_eval_set],
        check_specs=_model_check_specs(key),
    )
    def _student(context: AssetExecutionContext, pipeline: PipelineResource):
        result, metadata = _run(context, pipeline, "student", f"student@{name}", student=name)
        return dg.MaterializeResult(
            metadata=metadata, check_results=_model_checks(result.metrics, "target")
        )

    _student.__doc__ = (
        f"Student '{name}': re-initialised, trained on labeled data + pseudo-labels "
        "with strong perturbations, CutMix and top-10% loss trimming."
    )
    return _student


def _student_onnx_asset(name: str) -> dg.AssetsDefinition:
    """student_onnx_<name>: the student exported to ONNX (export@<name>)."""
    key = f"student_onnx_{name}"

    @dg.asset(
        name=key,
        group_name="deployment",
        kinds={"onnx", "mlflow", "dvc"},
        deps=[f"student_checkpoint_{name}"],
        check_specs=[dg.AssetCheckSpec("matches_pytorch", asset=key)],
    )
    def _onnx(context: AssetExecutionContext, pipeline: PipelineResource):
        result, metadata = _run(context, pipeline, "export", f"export@{name}", student=name)
        m = result.metrics
        metadata.update(
            {
                "onnx_bytes": dg.MetadataValue.int(int(m["onnx_bytes"])),
                "onnx_sha256": str(m["onnx_sha256"]),
                "onnx_md5": str(m["onnx_md5"]),
                "parity_max_rel_diff": dg.MetadataValue.float(float(m["parity_max_rel_diff"])),
                "cpu_latency_ms": dg.MetadataValue.float(float(m["cpu_latency_ms"])),
                "latency_size": str(m["latency_size"]),
                "dynamic_shapes": bool(m["dynamic_shapes"]),
            }
        )
        tolerance = pipeline.params().export.parity_tolerance
        return dg.MaterializeResult(
            metadata=metadata,
            check_results=[
                _check(
                    "matches_pytorch",
                    float(m["parity_max_rel_diff"]) <= tolerance,
                    f"onnxruntime within {tolerance:g} (max relative difference) of PyTorch",
                    parity_max_rel_diff=float(m["parity_max_rel_diff"]),
                )
            ],
        )

    _onnx.__doc__ = (
        f"Student '{name}' as one ONNX file (dynamic batch, height and width; normalisation "
        "and padding inside), parity-checked against the checkpoint and timed on the CPU."
    )
    return _onnx


def _default_params() -> Params | None:
    try:
        return load_params(REPO_ROOT / "params.yaml")
    except Exception:  # noqa: BLE001 - the UI must still load; the run reports the error
        return None


def _expert_deps(params: Params | None) -> list[str]:
    if params is None:
        return ["teacher_checkpoint"]
    deps = []
    for entry in params.agreement.experts:
        if entry == "teacher":
            deps.append("teacher_checkpoint")
        elif entry.startswith("student:"):
            deps.append(f"student_checkpoint_{entry.split(':', 1)[1]}")
    return deps


def build_definitions(params: Params | None = None) -> dg.Definitions:
    params = params if params is not None else _default_params()
    students = [_student_asset(name) for name in (params.students if params else {})]
    exports = [_student_onnx_asset(name) for name in (params.students if params else {})]

    @dg.asset(
        group_name="reports",
        kinds={"pytorch", "mlflow", "dvc"},
        deps=[*_expert_deps(params), "target_eval_set"],
        check_specs=[dg.AssetCheckSpec("covers_every_expert", asset="expert_agreement_report")],
    )
    def expert_agreement_report(context: AssetExecutionContext, pipeline: PipelineResource):
        """Four experts vote on point pairs; disagreements are flagged and queued for review."""
        result, metadata = _run(context, pipeline, "agreement", "agreement")
        summary = result.outputs[0] / "summary.md"
        if summary.exists():
            metadata["summary"] = dg.MetadataValue.md(summary.read_text())
        expected = len(pipeline.params().agreement.experts)
        got = int(result.metrics.get("n_experts", 0) or 0)
        return dg.MaterializeResult(
            metadata=metadata,
            check_results=[
                _check(
                    "covers_every_expert",
                    got == expected and expected >= 2,
                    "every configured expert voted on every pair",
                    n_experts=got,
                    expected=expected,
                )
            ],
        )

    assets = [
        labeled_data,
        unlabeled_images,
        target_eval_set,
        _teacher_asset(params.teacher if params else None),
        pseudo_labels,
        *students,
        *exports,
        expert_agreement_report,
    ]
    lineage = dg.define_asset_job(
        "lineage",
        selection=dg.AssetSelection.all(),
        description="The whole lineage, data to agreement report.",
    )
    return dg.Definitions(
        assets=assets,
        jobs=[lineage],
        resources={"pipeline": PipelineResource()},
        executor=dg.in_process_executor,
    )


defs = build_definitions()
