"""Training a model as a lineage stage: the teacher, each student, and the labeled-only controls.

One function trains and records every role alike (metrics, pictures, the trained config's
params under the same keys), so MLflow compares the teacher and the students row by row.
"""

from __future__ import annotations

import json
import shutil
import time
from functools import partial
from pathlib import Path

from depth_core.models.checkpoint import CHECKPOINT_FILE
from orchestration.lineage import paths as L
from orchestration.lineage.files import md5_file, write_json_atomic
from orchestration.lineage.stage_id import StageId
from orchestration.stages.base import (
    StageContext,
    StageResult,
    distributed_rank,
    finish_stage,
    prepare_output,
    section_device,
)
from orchestration.tracking import check_tracking, config_params, registered_model_name, stage_run


def val_sets(ctx: StageContext) -> dict[str, Path]:
    return {"synthetic": ctx.paths.inp(L.LABELED_VAL), "target": ctx.paths.inp(L.TARGET_EVAL)}


def baseline_metrics(ctx: StageContext) -> dict[str, float]:
    """The trivial 'lower in the image is nearer' prior, evaluated like a model."""
    from depth_core.evaluation import evaluate_row_prior

    out = {}
    for name, path in val_sets(ctx).items():
        for key, value in evaluate_row_prior(path).items():
            out[f"baseline/{name}/{key}"] = value
    return out


def train_stage(
    ctx: StageContext,
    stage_id: StageId,
    role: str,
    cfg,
    out_rel: str,
    pseudo: list[tuple[Path, Path]] | None,
    run_name: str,
    info: dict[str, str] | None = None,
) -> StageResult:
    """Train one model (params `teacher` | `students.NAME`) and record it: metrics, pictures and
    the trained config's params under the same keys for every role, so MLflow compares the
    teacher and the students row by row; a teacher or student also becomes a registered
    model version carrying its checkpoint and config."""
    from depth_core.training import train

    out_dir = ctx.paths.out(out_rel)
    stage, student = stage_id.record, stage_id.student
    cfg = _checked_train_config(ctx, cfg, stage_id.params_key)
    fit = partial(
        train,
        cfg,
        out_dir=out_dir,
        labeled_dirs=[ctx.paths.inp(L.LABELED_TRAIN)],
        val_sets=val_sets(ctx),
        pseudo=pseudo,
        resume=True,
    )
    if distributed_rank() > 0:
        # Under torchrun every rank trains; rank 0 alone prepares outputs and records them.
        return StageResult(stage, dict(fit(log=None).metrics), [out_dir])
    upstream = [
        ctx.paths.inp(L.LABELED_TRAIN),
        *(p for pair in (pseudo or []) for p in pair),
        *val_sets(ctx).values(),
    ]
    code = "teacher" if role == "teacher" else "student"
    prepare_output(out_dir, cfg.model_dump(mode="json"), upstream, code=code)
    report_dir = ctx.paths.report_dir(stage)
    tags = {**ctx.tags, **({"student": student} if student else {})}
    info = dict(info or {})
    start = time.perf_counter()
    with stage_run(
        ctx.paths.default_root,
        stage,
        role,
        ctx.pipeline_key,
        ctx.runner,
        config_params(cfg),  # what was trained, its device resolved
        tags,
        run_name,
    ) as run:
        result = fit(log=run.log_metrics)
        metrics = dict(result.metrics)
        metrics.update(baseline_metrics(ctx))
        metrics["stage_seconds"] = time.perf_counter() - start
        checkpoint = out_dir / CHECKPOINT_FILE
        metrics["checkpoint_bytes"] = checkpoint.stat().st_size
        metrics["checkpoint_md5"] = md5_file(checkpoint)
        run.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        pictures = _publish_training_pictures(out_dir, report_dir)
        for picture in pictures.values():
            run.log_artifact(picture, "pictures")
        run.log_artifact(report_dir / "history.json")
        version = _register_model(run, role, student, checkpoint, cfg, tags, stage, metrics)
        if version:
            info["mlflow_model"] = version
        metrics["mlflow_run_id"] = run.run_id
    return finish_stage(ctx, stage, metrics, [out_dir], pictures, run.run_id, info)


def _checked_train_config(ctx: StageContext, cfg, key: str):
    """Everything checkable fails here, naming its params key, before any output is cleared or
    any run opened: the device, the model's structure, a missing package or unfit weights.
    Returns the config with its device resolved."""
    from depth_core.models.weights import resolve_weights_file

    section_device(cfg.device, key, ctx.params)
    _check_model_builds(cfg.model, key)
    check_tracking(ctx.paths.default_root)
    if cfg.model.pretrained is not None:
        resolve_weights_file(cfg.model.pretrained, cfg.model.backbone)
    if cfg.device == "auto":
        cfg = cfg.model_copy(update={"device": ctx.params.device})
    return cfg


def _check_model_builds(model_cfg, key: str) -> None:
    """Build the model on the meta device (no memory, no weights), so a backbone or structure
    that cannot be built fails naming the params key, before any output is cleared."""
    import torch

    from depth_core.models import build_model

    try:
        with torch.device("meta"):
            build_model(model_cfg, load_pretrained=False)
    except (ValueError, RuntimeError, TypeError, KeyError) as error:
        raise ValueError(f"{key}.model: cannot build this model ({error})") from None


def _register_model(run, role, student, checkpoint, cfg, tags, stage, metrics) -> str | None:
    """A teacher or student becomes a version of its registered model: "name/version"."""
    registered = registered_model_name(role, student)
    if not registered:
        return None
    version = run.register_model(
        registered,
        [checkpoint],
        cfg.model_dump(mode="json"),
        {**tags, "role": role, "stage": stage, "checkpoint_md5": metrics["checkpoint_md5"]},
    )
    return f"{registered}/{version}" if version else None


def _publish_training_pictures(out_dir: Path, report_dir: Path) -> dict[str, Path]:
    """History tables and pictures next to the metrics (DVC plots; not cached with the model).

    DVC plots read a list of records per file: per-epoch rows go to history.json, per-step
    losses to steps.json.
    """
    report_dir.mkdir(parents=True, exist_ok=True)
    history_file = out_dir / "history.json"
    if history_file.exists():
        history = json.loads(history_file.read_text())
        write_json_atomic(report_dir / "history.json", history.get("epochs", []))
        write_json_atomic(report_dir / "steps.json", history.get("steps", []))
    pictures = {}
    for name in ("loss_curve.png", "val_metrics.png", "samples.png"):
        src = out_dir / name
        if src.exists():
            dst = report_dir / name
            shutil.copyfile(src, dst)
            pictures[name[:-4]] = dst
    return pictures
