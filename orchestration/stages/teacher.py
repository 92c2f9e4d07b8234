"""The teacher stage: train the teacher (`teacher.source: train`), or install and evaluate one
that already exists (a depth-distill checkpoint or a Hugging Face folder)."""

from __future__ import annotations

import time
from pathlib import Path

from orchestration.lineage import paths as L
from orchestration.lineage.files import write_json_atomic
from orchestration.lineage.stage_id import StageId
from orchestration.stages import teacher_source
from orchestration.stages.base import (
    StageContext,
    StageResult,
    distributed_rank,
    finish_stage,
    prepare_output,
    section_device,
)
from orchestration.stages.training import baseline_metrics, train_stage, val_sets
from orchestration.tracking import check_tracking, stage_run


def stage_teacher(ctx: StageContext) -> StageResult:
    """Train the teacher (`teacher.source: train`), or install and evaluate an existing one."""
    if ctx.params.teacher.source != "train":
        return _existing_teacher_stage(ctx)
    return train_stage(
        ctx,
        StageId("teacher"),
        "teacher",
        ctx.params.teacher.train_config(),
        L.TEACHER,
        None,
        "teacher",
        info={"teacher_source": "train"},
    )


# What an existing teacher's stage reads of the teacher section (it trains nothing).
_EXISTING_TEACHER_KEYS = (
    "source",
    "path",
    "device",
    "batch_size",
    "seed",
    "val_max_images",
    "n_samples",
)


def _existing_teacher_stage(ctx: StageContext) -> StageResult:
    """teacher.source checkpoint | transformers: the given model is copied into the teacher's
    output directory and evaluated like a trained teacher's final validation (same sets, batch
    size, pair seed, fp32 and metric keys, plus the row-prior baseline); nothing is trained."""
    from depth_core.evaluation import evaluate_sets
    from depth_core.model_loading import load_depth_model

    teacher = ctx.params.teacher
    out_dir = ctx.paths.out(L.TEACHER)
    source = teacher_source.existing_teacher_path(teacher, ctx.paths.default_root, out_dir)
    if distributed_rank() > 0:  # under torchrun, rank 0 alone installs and evaluates
        return StageResult("teacher", {}, [out_dir])
    device = section_device(teacher.device, "teacher", ctx.params)
    check_tracking(ctx.paths.default_root)
    start = time.perf_counter()
    # Loaded before the output is touched: weights or a processor file that do not load fail
    # by name with the previous teacher and its pseudo-labels still in place.
    model, described = load_depth_model(source, map_location=device)
    made_from = teacher_source.fingerprint(source, teacher.source)
    digest = made_from["digest"]
    prepare_output(out_dir, made_from, code="teacher")
    model_path = teacher_source.install(source, teacher.source, out_dir)
    report_dir = ctx.paths.report_dir("teacher")
    info = _describe_existing_teacher(teacher.source, source, model, described)
    # The keys a trained teacher's run logs too (batch_size, seed, ...), the device resolved.
    logged = {k: getattr(teacher, k) for k in _EXISTING_TEACHER_KEYS}
    logged["device"] = teacher.device if teacher.device != "auto" else ctx.params.device
    logged["resolved_path"] = str(source)
    run_tags = {**ctx.tags, **{k: v for k, v in info.items() if k != "teacher_path"}}
    with stage_run(
        ctx.paths.default_root,
        "teacher",
        "teacher",
        ctx.pipeline_key,
        ctx.runner,
        logged,
        run_tags,
        "teacher",
    ) as run:
        # The call training makes after every epoch, so the numbers compare with a trained teacher's.
        metrics = evaluate_sets(
            model, val_sets(ctx), teacher.batch_size, device, teacher.val_max_images, teacher.seed
        )
        pictures = _existing_teacher_pictures(model, ctx, teacher, metrics, report_dir, device)
        metrics.update(baseline_metrics(ctx))
        metrics["stage_seconds"] = time.perf_counter() - start
        metrics["checkpoint_bytes"] = teacher_source.size_of(model_path)
        metrics["checkpoint_md5"] = digest
        run.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        for picture in pictures.values():
            run.log_artifact(picture, "pictures")
        run.log_artifact(report_dir / "history.json")
        metrics["mlflow_run_id"] = run.run_id
    return finish_stage(ctx, "teacher", metrics, [out_dir], pictures, run.run_id, info)


def _describe_existing_teacher(kind: str, source: Path, model, described: dict) -> dict[str, str]:
    """What the teacher is, for the asset's metadata and the MLflow tags."""
    info = {"teacher_source": kind, "teacher_path": str(source)}
    if described.get("source") == "official":
        info["teacher_model_type"] = (
            f"depth_anything_v{described['version']}_{described['encoder']}"
        )
        info["teacher_depth_type"] = str(described["depth_type"])
        info["teacher_img_size"] = str(described["img_size"])
    elif kind == "transformers":
        info["teacher_model_type"] = str(described["model_type"])
        info["teacher_depth_type"] = str(described["depth_type"])
        info["teacher_img_size"] = str(described["img_size"])
    else:
        info["teacher_backbone"] = model.config.backbone
        info["teacher_img_size"] = str(model.config.img_size)
    return info


def _existing_teacher_pictures(
    model, ctx: StageContext, cfg, metrics: dict, report_dir: Path, device
) -> dict[str, Path]:
    """The files a trained teacher publishes (dvc.yaml declares them): one validation row at
    epoch 0, no steps, and the depth samples of the first validation images."""
    from depth_core.plots import plot_epoch_metrics, plot_loss_curve
    from depth_core.samples_picture import samples_picture

    report_dir.mkdir(parents=True, exist_ok=True)
    history = [{"epoch": 0, "step": 0, **metrics}]
    write_json_atomic(report_dir / "history.json", history)
    write_json_atomic(report_dir / "steps.json", [])
    plot_loss_curve([], report_dir / "loss_curve.png")  # for DVC; not shown (no steps)
    pictures = {"val_metrics": plot_epoch_metrics(history, report_dir / "val_metrics.png")}
    if cfg.n_samples > 0:
        pictures["samples"] = samples_picture(
            model, ctx.paths.inp(L.LABELED_VAL), cfg.n_samples, report_dir / "samples.png", device
        )
    return pictures
