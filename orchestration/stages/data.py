"""The data stages: labeled_data, unlabeled_images and target_eval.

Each renders its domain (`source: synthetic | target`) or imports a user's folder, stores it
as shards with a manifest (depth_core.data) and shows a contact sheet of its first samples.
With `source: webdataset` the images stay in their tars: the stage reads every tar once and
stores an index of it (`depth_core.data.tar_indexer`: the expanded urls, each tar's keys, a
manifest and summary.json), so DVC versions the index and the pixels stay in the bucket.
"""

from __future__ import annotations

import time
from pathlib import Path

from orchestration.lineage import paths as L
from orchestration.stages.base import (
    StageContext,
    StageResult,
    finish_stage,
    prepare_output,
    write_preview,
)


def _render_dataset(
    out_dir: Path,
    render_cfg,
    n: int,
    shard_size: int,
    seed: int,
    keep_depth: bool,
    desc: str,
    workers: int,
) -> dict:
    from depth_core.data.manifest import write_dataset_metadata
    from depth_core.data.shards import build_sharded
    from depth_core.synth.render import ShardRenderer

    stats = build_sharded(
        out_dir,
        n,
        shard_size,
        ShardRenderer(render_cfg, seed, keep_depth),
        desc=desc,
        workers=workers,
    )
    write_dataset_metadata(
        out_dir,
        params={"source": render_cfg.domain, "seed": seed, "render": render_cfg.model_dump()},
    )
    return stats


_TAR_KEYS = {"urls", "working_size", "depth_scale"}


def _data_fingerprint(cfg) -> dict:
    """What a dataset's content depends on: its params less the process count (and less the
    tar keys, which only `source: webdataset` reads)."""
    exclude = {"workers"} | (set() if cfg.source == "webdataset" else _TAR_KEYS)
    return cfg.model_dump(mode="json", exclude=exclude)


def _decode_spec(cfg, labeled: bool):
    """How the section's tars are decoded: its working size; EXIF rotation for photos only
    (a depth raster is aligned with the pixels as stored)."""
    from depth_core.data.tar_shards.index import DecodeSpec

    height, width = cfg.working_size
    depth_scale = cfg.depth_scale if labeled else 1.0
    return DecodeSpec(height, width, apply_exif=not labeled, depth_scale=depth_scale)


def _scan(cfg, kind: str, workers: int, desc: str):
    from depth_core.data.tar_indexer import scan_tars

    return scan_tars(cfg.urls, kind, _decode_spec(cfg, kind == "labeled"), workers, desc=desc)


def _tar_metrics(result) -> dict:
    """What a tar-backed stage adds to its metrics: tars read and skipped whole."""
    return {"n_tars": len(result.urls), "n_tars_skipped": result.n_tars_skipped}


def _index_labeled_tars(cfg, train_dir: Path, val_dir: Path):
    """Index the labeled tars into a training and a validation set, split by key."""
    from depth_core.data.tar_indexer import validation_keys, write_tar_dataset

    result = _scan(cfg, "labeled", cfg.workers, "labeled tars")
    val = validation_keys(result, cfg.val_fraction, cfg.seed)
    parameters = {**_data_fingerprint(cfg), "split_seed": cfg.seed}
    write_tar_dataset(train_dir, result, lambda key: key not in val, parameters)
    write_tar_dataset(val_dir, result, val.__contains__, parameters, skipped=[])
    return result


def _index_tars(cfg, kind: str, out_dir: Path, workers: int, desc: str, parameters: dict):
    from depth_core.data.tar_indexer import write_tar_dataset

    result = _scan(cfg, kind, workers, desc)
    write_tar_dataset(out_dir, result, parameters=parameters)
    return result


def _dataset_stats(dataset_dir: Path) -> dict:
    from depth_core.data.manifest import read_manifest

    manifest = read_manifest(dataset_dir)
    out = {"n_samples": len(manifest)}
    if "valid_fraction" in manifest:
        out["valid_fraction"] = float(manifest["valid_fraction"].mean())
    return out


def stage_labeled_data(ctx: StageContext) -> StageResult:
    cfg = ctx.params.data.labeled
    train_dir, val_dir = ctx.paths.out(L.LABELED_TRAIN), ctx.paths.out(L.LABELED_VAL)
    start = time.perf_counter()
    skipped = 0
    extra: dict = {}
    for out in (train_dir, val_dir):
        prepare_output(out, _data_fingerprint(cfg), code="labeled_data")
    if cfg.source == "webdataset":
        result = _index_labeled_tars(cfg, train_dir, val_dir)
        skipped, extra = len(result.skipped), _tar_metrics(result)
    elif cfg.source == "synthetic":
        _render_dataset(
            train_dir,
            cfg.render,
            cfg.n_train,
            cfg.shard_size,
            cfg.seed,
            True,
            "labeled train",
            cfg.workers,
        )
        _render_dataset(
            val_dir,
            cfg.render,
            cfg.n_val,
            cfg.shard_size,
            cfg.seed + 100_003,
            True,
            "labeled val",
            cfg.workers,
        )
    else:
        from depth_core.data.importers import import_rgbd_folder_split

        report = import_rgbd_folder_split(
            cfg.import_config(), train_dir, val_dir, cfg.val_fraction, seed=cfg.seed
        )
        skipped = int(report["n_skipped"])
    preview = write_preview(train_dir, ctx.paths.report_dir("labeled_data") / "preview.png")
    train, val = _dataset_stats(train_dir), _dataset_stats(val_dir)
    metrics = {
        "n_train": train["n_samples"],
        "n_val": val["n_samples"],
        "valid_fraction": train.get("valid_fraction"),
        "n_skipped": skipped,
        **extra,
        "stage_seconds": time.perf_counter() - start,
    }
    return finish_stage(ctx, "labeled_data", metrics, [train_dir, val_dir], {"preview": preview})


def stage_unlabeled_images(ctx: StageContext) -> StageResult:
    cfg = ctx.params.data.unlabeled
    out_dir = ctx.paths.out(L.UNLABELED)
    start = time.perf_counter()
    skipped = 0
    extra: dict = {}
    prepare_output(out_dir, _data_fingerprint(cfg), code="unlabeled_images")
    if cfg.source == "webdataset":
        parameters = _data_fingerprint(cfg)
        result = _index_tars(cfg, "unlabeled", out_dir, cfg.workers, "unlabeled tars", parameters)
        skipped, extra = len(result.skipped), _tar_metrics(result)
    elif cfg.source == "target":
        _render_dataset(
            out_dir,
            cfg.render,
            cfg.n_images,
            cfg.shard_size,
            cfg.seed,
            False,
            "unlabeled",
            cfg.workers,
        )
    else:
        from depth_core.data.importers import import_image_folder

        report = import_image_folder(cfg.folder, out_dir)
        skipped = int(report["n_skipped"])
    preview = write_preview(out_dir, ctx.paths.report_dir("unlabeled_images") / "preview.png")
    metrics = {
        "n_images": _dataset_stats(out_dir)["n_samples"],
        "n_skipped": skipped,
        **extra,
        "stage_seconds": time.perf_counter() - start,
    }
    return finish_stage(ctx, "unlabeled_images", metrics, [out_dir], {"preview": preview})


def stage_target_eval(ctx: StageContext) -> StageResult:
    cfg = ctx.params.data.target_eval
    out_dir = ctx.paths.out(L.TARGET_EVAL)
    start = time.perf_counter()
    skipped = 0
    extra: dict = {}
    render = ctx.params.data.unlabeled.render
    prepare_output(
        out_dir,
        {
            "target_eval": _data_fingerprint(cfg),
            "render": render.model_dump(mode="json"),
            "shard_size": ctx.params.data.unlabeled.shard_size,
        },
        code="target_eval",
    )
    workers = ctx.params.data.unlabeled.workers
    if cfg.source == "webdataset":
        parameters = _data_fingerprint(cfg)
        result = _index_tars(cfg, "labeled", out_dir, workers, "target eval tars", parameters)
        skipped, extra = len(result.skipped), _tar_metrics(result)
    elif cfg.source == "target":
        _render_dataset(
            out_dir,
            render,
            cfg.n_images,
            ctx.params.data.unlabeled.shard_size,
            cfg.seed + 200_003,
            True,
            "target eval",
            workers,
        )
    else:
        from depth_core.data.importers import import_rgbd_folder

        report = import_rgbd_folder(cfg.folder, out_dir)
        skipped = int(report["n_skipped"])
    preview = write_preview(out_dir, ctx.paths.report_dir("target_eval") / "preview.png")
    stats = _dataset_stats(out_dir)
    metrics = {
        "n_images": stats["n_samples"],
        "valid_fraction": stats.get("valid_fraction"),
        "n_skipped": skipped,
        **extra,
        "stage_seconds": time.perf_counter() - start,
    }
    return finish_stage(ctx, "target_eval", metrics, [out_dir], {"preview": preview})
