"""The agreement stage: four experts vote on the relative depth of point pairs of the held-out
target set; pairs where any expert differs are flagged (depth_core.voting)."""

from __future__ import annotations

import time

from orchestration.lineage import paths as L
from orchestration.stages.base import StageContext, StageResult, finish_stage, stage_device
from orchestration.stages.experts import expert_checkpoints
from orchestration.tracking import check_tracking, config_params, stage_run


def stage_agreement(ctx: StageContext) -> StageResult:
    from depth_core.data.dataset import load_arrays
    from depth_core.inference import predict_each
    from depth_core.voting.agreement import run_agreement

    cfg = ctx.params.agreement
    out_dir = ctx.paths.out(L.AGREEMENT)
    check_tracking(ctx.paths.default_root)
    start = time.perf_counter()
    eval_dir = ctx.paths.inp(L.TARGET_EVAL)
    arrays = load_arrays(eval_dir, limit=cfg.n_images)
    images = list(arrays["image"])
    # Each expert predicts as `depth-distill predict` would (one inference path, one precision).
    predictions = predict_each(
        expert_checkpoints(ctx), images, device=stage_device(ctx.params), batch_size=cfg.batch_size
    )
    metrics = run_agreement(
        predictions,
        images,
        [str(i) for i in arrays["id"]],
        out_dir,
        cfg.pairs,
        gt_depth=list(arrays["depth"]),
        gt_mask=list(arrays["mask"]),
        report_images=cfg.report_images,
    )
    metrics = {**metrics, "stage_seconds": time.perf_counter() - start}
    with stage_run(
        ctx.paths.default_root,
        "agreement",
        "report",
        ctx.pipeline_key,
        ctx.runner,
        {"device": ctx.params.device, **config_params(cfg, "agreement")},
        ctx.tags,
        "expert agreement",
    ) as run:
        run.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        run.log_artifact(out_dir, "agreement_report")
        metrics["mlflow_run_id"] = run.run_id
    pictures = {p.stem: p for p in sorted(out_dir.glob("*.png"))}
    return finish_stage(ctx, "agreement", metrics, [out_dir], pictures, run.run_id)
