"""export@<student>: a trained student as models/onnx/<student>.onnx, ready to deploy.

The export is parity-checked against the PyTorch checkpoint (depth_core.export fails above the
tolerance and then writes nothing), timed on the CPU through onnxruntime, and attached to the
MLflow run that trained the student, so the run holds the model in both forms; the student's
registered model version is tagged with the ONNX file's URI and sha256.
"""

from __future__ import annotations

import time

from depth_core.models.checkpoint import CHECKPOINT_FILE
from orchestration.lineage import paths as L
from orchestration.lineage.stage_id import StageId
from orchestration.stages.base import (
    StageContext,
    StageResult,
    finish_stage,
    recorded_run_id,
    student_config,
)
from orchestration.tracking import attach_to_run


def onnx_path(ctx: StageContext, name: str):
    return ctx.paths.out(f"{L.ONNX}/{name}.onnx")


def _student_checkpoint(ctx: StageContext, name: str):
    student_config(ctx, name)
    checkpoint = ctx.paths.inp(ctx.paths.student(name)) / CHECKPOINT_FILE
    if not checkpoint.is_file():
        raise FileNotFoundError(
            f"{StageId('export', name).dvc}: student checkpoint {checkpoint} does not exist "
            f"(run `depth-distill stage student --student {name}` first)"
        )
    return checkpoint


def stage_export(ctx: StageContext, name: str) -> StageResult:
    from depth_core.export import export_checkpoint, load_onnx_model, onnx_latency_ms

    checkpoint = _student_checkpoint(ctx, name)
    cfg = ctx.params.export
    start = time.perf_counter()
    report = export_checkpoint(checkpoint, onnx_path(ctx, name), cfg.export_config())
    model, _ = load_onnx_model(report.path, threads=cfg.latency_threads)
    side = model.config.img_size
    latency = onnx_latency_ms(model, 1, (side, side), cfg.latency_iterations)
    metrics = {
        "onnx_bytes": report.bytes,
        "onnx_sha256": report.sha256,
        "onnx_md5": report.md5,
        "parity_max_rel_diff": report.parity_max_rel_diff,
        "cpu_latency_ms": round(latency, 3),
        "latency_size": f"{side}x{side}",
        "latency_threads": cfg.latency_threads,
        "dynamic_shapes": report.fixed_size is None,
        "opset": report.opset,
        "stage_seconds": time.perf_counter() - start,
    }
    run_id = recorded_run_id(ctx, StageId.of_student(name).record)  # the run that trained it
    attached = attach_to_run(
        ctx.paths.default_root,
        run_id,
        {"onnx": onnx_path(ctx, name)},
        {f"onnx/{k}": metrics[k] for k in ("onnx_bytes", "parity_max_rel_diff", "cpu_latency_ms")},
        {"onnx_sha256": report.sha256, "onnx_path": report.path},
    )
    info = {"onnx_path": report.path, "source_checkpoint_path": str(checkpoint)}
    if attached and attached.model_versions:
        info["mlflow_model"] = ", ".join(attached.model_versions)
    if report.note:
        info["note"] = report.note
    return finish_stage(
        ctx,
        StageId("export", name).record,
        metrics,
        [onnx_path(ctx, name)],
        run_id=run_id if attached else None,
        info=info,
    )
