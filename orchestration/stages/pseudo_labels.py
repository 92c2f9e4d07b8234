"""The pseudo_labels stage: the teacher's disparity on every unlabeled image, sharded.

Run bare it is one process; under torchrun (`DEPTH_DISTILL_LAUNCHER`) rank r of W labels the
whole shards r::W. Rank 0 alone keeps or clears the output (its fingerprint), and, once every
rank has met it at the end, checks every shard, seals the dataset (summary.json) and records
the stage: metrics, the stage record and the MLflow run. A rank that fails makes every rank
fail, naming the rank and the shard, and nothing is sealed.
"""

from __future__ import annotations

import time
from pathlib import Path

from orchestration.lineage import paths as L
from orchestration.stages import teacher_source
from orchestration.stages.base import (
    StageContext,
    StageResult,
    finish_stage,
    prepare_output,
    stage_device,
    write_preview,
)
from orchestration.tracking import check_tracking, config_params, stage_run

# Figures each rank reports that add up over ranks.
SUMMED = ("n_images", "n_shards_written", "n_shards_skipped", "nan_count", "images_per_second")


def stage_pseudo_labels(ctx: StageContext) -> StageResult:
    from depth_core import distributed
    from depth_core.model_loading import check_model_path, model_kind
    from depth_core.pseudo_label import (
        PseudoLabelError,
        finish_pseudo_labels,
        label_shards,
        labelling_parameters,
    )

    cfg = ctx.params.pseudo_labels
    out_dir = ctx.paths.out(L.PSEUDO_LABELS)
    unlabeled = ctx.paths.inp(L.UNLABELED)
    checkpoint = teacher_source.teacher_model_path(ctx.paths.inp(L.TEACHER))
    check_model_path(checkpoint, model_kind(checkpoint))  # a damaged teacher clears no labels
    device = stage_device(ctx.params)
    ranks = distributed.setup(device)
    try:
        if ranks.is_main:
            check_tracking(ctx.paths.default_root)
            prepare_output(
                out_dir,
                cfg.model_dump(mode="json"),
                [ctx.paths.inp(L.TEACHER), unlabeled],
                code="pseudo_labels",
            )
        distributed.barrier(ranks)  # no rank writes before rank 0 has kept or cleared the output
        start = time.perf_counter()
        try:
            stats, error = (
                label_shards(
                    checkpoint=checkpoint,
                    unlabeled_dir=unlabeled,
                    out_dir=out_dir,
                    batch_size=cfg.batch_size,
                    device=distributed.local_device(device, ranks),
                    amp=cfg.amp,
                    flip_tta=cfg.flip_tta,
                    scales=cfg.scales,
                    rank=ranks.rank,
                    world_size=ranks.world_size,
                ),
                None,
            )
        except Exception as exc:  # noqa: BLE001 - every rank learns of it below and fails alike
            stats, error = None, f"{type(exc).__name__}: {exc}"
        reports = distributed.gather_objects((stats, error), ranks)
        failed = [f"rank {rank}: {err}" for rank, (_, err) in enumerate(reports) if err]
        if failed:
            raise PseudoLabelError("pseudo_labels failed; " + "; ".join(failed))
        if not ranks.is_main:
            return StageResult("pseudo_labels", {}, [out_dir])
        per_rank = [s for s, _ in reports]
        parameters = labelling_parameters(
            _within(checkpoint, ctx),
            _within(unlabeled, ctx),
            cfg.flip_tta,
            cfg.scales,
            str(per_rank[0]["amp"]),
        )
        metrics = {key: sum(float(s[key]) for s in per_rank) for key in SUMMED}
        metrics["bf16"] = per_rank[0]["bf16"]
        metrics.update(finish_pseudo_labels(unlabeled, out_dir, parameters))
        metrics["world_size"] = ranks.world_size
        preview = write_preview(out_dir, ctx.paths.report_dir("pseudo_labels") / "preview.png")
        metrics["stage_seconds"] = time.perf_counter() - start
        with stage_run(
            ctx.paths.default_root,
            "pseudo_labels",
            "labels",
            ctx.pipeline_key,
            ctx.runner,
            {"device": ctx.params.device, **config_params(cfg, "pseudo_labels")},
            ctx.tags,
            "pseudo-labels",
        ) as run:
            run.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
            run.log_artifact(preview, "pictures")
            metrics["mlflow_run_id"] = run.run_id
        return finish_stage(
            ctx, "pseudo_labels", metrics, [out_dir], {"preview": preview}, run.run_id
        )
    finally:
        distributed.teardown(ranks)


def _within(path, ctx: StageContext) -> str:
    """A path as summary.json records it: relative to the lineage's root, so the dataset's bytes
    (and its DVC hash) do not depend on where the checkout lives."""
    root = ctx.paths.default_root
    return Path(path).relative_to(root).as_posix() if Path(path).is_relative_to(root) else str(path)
