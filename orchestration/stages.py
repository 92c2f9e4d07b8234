"""The lineage steps, each implemented once: params + input paths in, files + metrics out.

`dvc repro` reaches these through `depth-distill stage NAME`; the Dagster assets call them
directly. Each stage writes to the fixed paths of `orchestration.layout`, records its metrics
in `metrics/<stage>.json`, and logs training to MLflow through `orchestration.tracking`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from pydantic import BaseModel

from orchestration import layout as L
from orchestration import teacher_source
from orchestration.config import Params, expert_name, resolve_path
from orchestration.files import md5_file, write_json_atomic
from orchestration.fingerprints import (
    FINGERPRINT_FILE,
    code_digest,
    fingerprint_of,
    upstream_entry,
)
from orchestration.layout import Layout
from orchestration.locks import lock_name, output_lock
from orchestration.stage_records import write_record
from orchestration.tracking import (
    check_tracking,
    git_commit,
    registered_model_name,
    stage_run,
    teacher_tags,
)

STAGE_NAMES = (
    "labeled_data",
    "unlabeled_images",
    "target_eval",
    "teacher",
    "pseudo_labels",
    "student",
    "agreement",
    "export",
    "benchmark_report",
)


@dataclass
class StageContext:
    """Everything a stage needs besides its params: where to write and how to tag its runs."""

    params: Params
    layout: Layout
    runner: str = "cli"
    pipeline_key: str | None = None
    experiment: str | None = None

    def __post_init__(self):
        if self.pipeline_key is None:
            self.pipeline_key = default_pipeline_key(self.layout.root, self.params)

    @property
    def tags(self) -> dict[str, str]:
        """Tags of every MLflow run of this context: the experiment, and where the teacher
        that shaped the run came from."""
        teacher = self.params.teacher
        tags = teacher_tags(teacher.source, teacher.path)
        if self.experiment:
            tags["experiment"] = self.experiment
        return tags


@dataclass
class StageResult:
    stage: str
    metrics: dict[str, float | int | str | None]
    outputs: list[Path] = field(default_factory=list)
    pictures: dict[str, Path] = field(default_factory=dict)
    mlflow_run_id: str | None = None
    info: dict[str, str] = field(default_factory=dict)  # what was made, for people (not metrics)


def default_pipeline_key(root: Path, params: Params) -> str:
    """Stages of one DVC pipeline execution share this key: git commit + params digest."""
    digest = hashlib.sha1(params.model_dump_json().encode()).hexdigest()[:12]
    return f"{(git_commit(root) or 'nogit')[:12]}-{digest}"


def prepare_output(
    path: Path, fingerprint: dict, upstream: list[Path] = (), code: str | None = None
) -> None:
    """Keep a persisted output only if it was made from the same params, code and inputs.

    Outputs survive an interruption so a re-run resumes (complete shards, the last training
    checkpoint); when the params, the code of dvc.yaml stage `code` or an upstream output's
    fingerprint or content changed, the stale directory goes and the work is redone.
    """
    full = {
        "params": fingerprint,
        "code": code_digest(code) if code else None,
        "upstream": {str(Path(u).name): upstream_entry(u) for u in upstream},
    }
    path = Path(path)
    if path.exists() and fingerprint_of(path) != json.loads(json.dumps(full, sort_keys=True)):
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path / FINGERPRINT_FILE, full)


def _finish(
    ctx: StageContext,
    stage: str,
    metrics: dict,
    outputs: list[Path],
    pictures: dict[str, Path] | None = None,
    run_id: str | None = None,
    info: dict[str, str] | None = None,
) -> StageResult:
    """Write the metrics and the record of what was made (orchestration.stage_records)."""
    metrics = {**metrics, "stage_seconds": round(float(metrics.get("stage_seconds", 0.0)), 2)}
    write_json_atomic(ctx.layout.metrics_file(stage), metrics)
    result = StageResult(stage, metrics, outputs, pictures or {}, run_id, info or {})
    write_record(ctx.layout.metrics_file(stage), ctx.layout.root, result)
    return result


def _device(params: Params):
    return _checked_device(params.device, "device")


def _checked_device(preference: str, key: str):
    """The device a stage runs on, or a ValueError naming the params key that asked for it."""
    from depth_core.device import pick_device

    try:
        return pick_device(preference)
    except (RuntimeError, ValueError) as error:
        raise ValueError(f"{key}: {error}") from None


def _section_device(own: str, key: str, params: Params):
    """A section's own device (`KEY.device`), or the pipeline's `device` when it says auto."""
    if own != "auto":
        return _checked_device(own, f"{key}.device")
    return _device(params)


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


# --------------------------------------------------------------------------------------------
# data


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


def _data_fingerprint(cfg) -> dict:
    """What a dataset's content depends on: its params less the process count."""
    return cfg.model_dump(mode="json", exclude={"workers"})


def _preview(dataset_dir: Path, out_png: Path, n: int = 16) -> Path:
    from depth_core.data.preview import contact_sheet

    contact_sheet(dataset_dir, out_png, n=n)
    return out_png


def _dataset_stats(dataset_dir: Path) -> dict:
    from depth_core.data.manifest import read_manifest

    manifest = read_manifest(dataset_dir)
    out = {"n_samples": len(manifest)}
    if "valid_fraction" in manifest:
        out["valid_fraction"] = float(manifest["valid_fraction"].mean())
    return out


def stage_labeled_data(ctx: StageContext) -> StageResult:
    cfg = ctx.params.data.labeled
    train_dir, val_dir = ctx.layout.out(L.LABELED_TRAIN), ctx.layout.out(L.LABELED_VAL)
    start = time.perf_counter()
    skipped = 0
    for out in (train_dir, val_dir):
        prepare_output(out, _data_fingerprint(cfg), code="labeled_data")
    if cfg.source == "synthetic":
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
    preview = _preview(train_dir, ctx.layout.report_dir("labeled_data") / "preview.png")
    train, val = _dataset_stats(train_dir), _dataset_stats(val_dir)
    metrics = {
        "n_train": train["n_samples"],
        "n_val": val["n_samples"],
        "valid_fraction": train.get("valid_fraction"),
        "n_skipped": skipped,
        "stage_seconds": time.perf_counter() - start,
    }
    return _finish(ctx, "labeled_data", metrics, [train_dir, val_dir], {"preview": preview})


def stage_unlabeled_images(ctx: StageContext) -> StageResult:
    cfg = ctx.params.data.unlabeled
    out_dir = ctx.layout.out(L.UNLABELED)
    start = time.perf_counter()
    skipped = 0
    prepare_output(out_dir, _data_fingerprint(cfg), code="unlabeled_images")
    if cfg.source == "target":
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
    preview = _preview(out_dir, ctx.layout.report_dir("unlabeled_images") / "preview.png")
    metrics = {
        "n_images": _dataset_stats(out_dir)["n_samples"],
        "n_skipped": skipped,
        "stage_seconds": time.perf_counter() - start,
    }
    return _finish(ctx, "unlabeled_images", metrics, [out_dir], {"preview": preview})


def stage_target_eval(ctx: StageContext) -> StageResult:
    cfg = ctx.params.data.target_eval
    out_dir = ctx.layout.out(L.TARGET_EVAL)
    start = time.perf_counter()
    skipped = 0
    render = ctx.params.data.unlabeled.render
    prepare_output(
        out_dir,
        {
            "target_eval": cfg.model_dump(mode="json"),
            "render": render.model_dump(mode="json"),
            "shard_size": ctx.params.data.unlabeled.shard_size,
        },
        code="target_eval",
    )
    if cfg.source == "target":
        _render_dataset(
            out_dir,
            render,
            cfg.n_images,
            ctx.params.data.unlabeled.shard_size,
            cfg.seed + 200_003,
            True,
            "target eval",
            ctx.params.data.unlabeled.workers,
        )
    else:
        from depth_core.data.importers import import_rgbd_folder

        report = import_rgbd_folder(cfg.folder, out_dir)
        skipped = int(report["n_skipped"])
    preview = _preview(out_dir, ctx.layout.report_dir("target_eval") / "preview.png")
    stats = _dataset_stats(out_dir)
    metrics = {
        "n_images": stats["n_samples"],
        "valid_fraction": stats.get("valid_fraction"),
        "n_skipped": skipped,
        "stage_seconds": time.perf_counter() - start,
    }
    return _finish(ctx, "target_eval", metrics, [out_dir], {"preview": preview})


# --------------------------------------------------------------------------------------------
# training


def _val_sets(ctx: StageContext) -> dict[str, Path]:
    return {"synthetic": ctx.layout.inp(L.LABELED_VAL), "target": ctx.layout.inp(L.TARGET_EVAL)}


def _baseline_metrics(ctx: StageContext) -> dict[str, float]:
    """The trivial 'lower in the image is nearer' prior, evaluated like a model."""
    from depth_core.evaluation import evaluate_row_prior

    out = {}
    for name, path in _val_sets(ctx).items():
        for key, value in evaluate_row_prior(path).items():
            out[f"baseline/{name}/{key}"] = value
    return out


def _train_stage(
    ctx: StageContext,
    stage: str,
    role: str,
    cfg,
    out_rel: str,
    pseudo: list[tuple[Path, Path]] | None,
    key: str,
    run_name: str,
    info: dict[str, str] | None = None,
) -> StageResult:
    """Train one model (`key`: teacher | students.NAME) and record it: metrics, pictures and
    the trained config's params under the same keys for every role, so MLflow compares the
    teacher and the students row by row; a teacher or student also becomes a registered
    model version carrying its checkpoint and config."""
    from depth_core.training import train

    out_dir = ctx.layout.out(out_rel)
    student = key.split(".", 1)[1] if key.startswith("students.") else None
    cfg = _checked_train_config(ctx, cfg, key)
    fit = partial(
        train,
        cfg,
        out_dir=out_dir,
        labeled_dirs=[ctx.layout.inp(L.LABELED_TRAIN)],
        val_sets=_val_sets(ctx),
        pseudo=pseudo,
        resume=True,
    )
    if _distributed_rank() > 0:
        # Under torchrun every rank trains; rank 0 alone prepares outputs and records them.
        return StageResult(stage, dict(fit(log=None).metrics), [out_dir])
    upstream = [
        ctx.layout.inp(L.LABELED_TRAIN),
        *(p for pair in (pseudo or []) for p in pair),
        *_val_sets(ctx).values(),
    ]
    code = "teacher" if role == "teacher" else "student"
    prepare_output(out_dir, cfg.model_dump(mode="json"), upstream, code=code)
    report_dir = ctx.layout.report_dir(stage)
    tags = {**ctx.tags, **({"student": student} if student else {})}
    info = dict(info or {})
    start = time.perf_counter()
    with stage_run(
        ctx.layout.default_root,
        stage,
        role,
        ctx.pipeline_key,
        ctx.runner,
        _flatten(cfg),  # what was trained, its device resolved
        tags,
        run_name,
    ) as run:
        result = fit(log=run.log_metrics)
        metrics = dict(result.metrics)
        metrics.update(_baseline_metrics(ctx))
        metrics["stage_seconds"] = time.perf_counter() - start
        checkpoint = out_dir / L.CHECKPOINT_FILE
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
    return _finish(ctx, stage, metrics, [out_dir], pictures, run.run_id, info)


def _checked_train_config(ctx: StageContext, cfg, key: str):
    """Everything checkable fails here, naming its params key, before any output is cleared or
    any run opened: the device, the model's structure, a missing package or unfit weights.
    Returns the config with its device resolved."""
    from depth_core.models.weights import resolve_weights_file

    _section_device(cfg.device, key, ctx.params)
    _check_model_builds(cfg.model, key)
    check_tracking(ctx.layout.default_root)
    if cfg.model.pretrained is not None:
        resolve_weights_file(cfg.model.pretrained, cfg.model.backbone)
    if cfg.device == "auto":
        cfg = cfg.model_copy(update={"device": ctx.params.device})
    return cfg


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


def _distributed_rank() -> int:
    """This process's rank under torchrun (RANK is set by the launcher), else 0."""
    return int(os.environ.get("RANK", "0"))


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


def _flatten(config: BaseModel, prefix: str = "") -> dict:
    """One MLflow param per config field under dotted keys (`optim.lr`, `model.backbone`):
    nested configs are walked, any other value (a list, `backbone_kwargs`) is one JSON value,
    so every run of one config type logs the same keys whatever its values."""
    dumped = config.model_dump(mode="json")
    flat = {}
    for name in type(config).model_fields:
        key = f"{prefix}.{name}" if prefix else name
        value = getattr(config, name)
        if isinstance(value, BaseModel):
            flat.update(_flatten(value, key))
        elif isinstance(dumped[name], (dict, list)):
            flat[key] = json.dumps(dumped[name], sort_keys=True)
        else:
            flat[key] = dumped[name]
    return flat


def stage_teacher(ctx: StageContext) -> StageResult:
    """Train the teacher (`teacher.source: train`), or install and evaluate an existing one."""
    if ctx.params.teacher.source != "train":
        return _existing_teacher_stage(ctx)
    return _train_stage(
        ctx,
        "teacher",
        "teacher",
        ctx.params.teacher.train_config(),
        L.TEACHER,
        None,
        "teacher",
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
    from depth_core.models import load_depth_model

    teacher = ctx.params.teacher
    out_dir = ctx.layout.out(L.TEACHER)
    source = teacher_source.existing_teacher_path(teacher, ctx.layout.default_root, out_dir)
    if _distributed_rank() > 0:  # under torchrun, rank 0 alone installs and evaluates
        return StageResult("teacher", {}, [out_dir])
    device = _section_device(teacher.device, "teacher", ctx.params)
    check_tracking(ctx.layout.default_root)
    digest = teacher_source.content_digest(source)
    prepare_output(out_dir, {"source": teacher.source, "digest": digest}, code="teacher")
    model_path = teacher_source.install(source, teacher.source, out_dir)
    report_dir = ctx.layout.report_dir("teacher")
    start = time.perf_counter()
    model, described = load_depth_model(model_path, map_location=device)
    info = _describe_existing_teacher(teacher.source, source, model, described)
    # The keys a trained teacher's run logs too (batch_size, seed, ...), the device resolved.
    logged = {k: getattr(teacher, k) for k in _EXISTING_TEACHER_KEYS}
    logged["device"] = teacher.device if teacher.device != "auto" else ctx.params.device
    logged["resolved_path"] = str(source)
    run_tags = {**ctx.tags, **{k: v for k, v in info.items() if k != "teacher_path"}}
    with stage_run(
        ctx.layout.default_root,
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
            model, _val_sets(ctx), teacher.batch_size, device, teacher.val_max_images, teacher.seed
        )
        pictures = _existing_teacher_pictures(model, ctx, teacher, metrics, report_dir, device)
        metrics.update(_baseline_metrics(ctx))
        metrics["stage_seconds"] = time.perf_counter() - start
        metrics["checkpoint_bytes"] = teacher_source.size_of(model_path)
        metrics["checkpoint_md5"] = digest
        run.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        for picture in pictures.values():
            run.log_artifact(picture, "pictures")
        run.log_artifact(report_dir / "history.json")
        metrics["mlflow_run_id"] = run.run_id
    return _finish(ctx, "teacher", metrics, [out_dir], pictures, run.run_id, info)


def _describe_existing_teacher(kind: str, source: Path, model, described: dict) -> dict[str, str]:
    """What the teacher is, for the asset's metadata and the MLflow tags."""
    info = {"teacher_source": kind, "teacher_path": str(source)}
    if kind == "transformers":
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

    report_dir.mkdir(parents=True, exist_ok=True)
    history = [{"epoch": 0, "step": 0, **metrics}]
    write_json_atomic(report_dir / "history.json", history)
    write_json_atomic(report_dir / "steps.json", [])
    plot_loss_curve([], report_dir / "loss_curve.png")  # for DVC; not shown (no steps)
    pictures = {"val_metrics": plot_epoch_metrics(history, report_dir / "val_metrics.png")}
    if cfg.n_samples > 0:
        pictures["samples"] = _samples_picture(
            model, ctx.layout.inp(L.LABELED_VAL), cfg.n_samples, report_dir / "samples.png", device
        )
    return pictures


def _samples_picture(model, dataset_dir: Path, n: int, path: Path, device) -> Path:
    """image | prediction | ground truth for the first images of a labeled set."""
    import numpy as np

    from depth_core.data.dataset import load_arrays
    from depth_core.inference import predict_disparity
    from depth_core.plots import plot_depth_samples

    arrays = load_arrays(dataset_dir, limit=n, keys=["image", "depth", "mask"])
    images = list(arrays["image"])
    predictions = predict_disparity(model, images, device=device)
    masks = arrays["mask"].astype(bool) & (arrays["depth"] > 0)
    truth = [np.where(m, 1.0 / np.maximum(d, 1e-6), 0.0) for d, m in zip(arrays["depth"], masks)]
    return plot_depth_samples(images, predictions, truth, path, masks=list(masks))


def stage_pseudo_labels(ctx: StageContext) -> StageResult:
    from depth_core.pseudo_label import generate_pseudo_labels

    cfg = ctx.params.pseudo_labels
    out_dir = ctx.layout.out(L.PSEUDO_LABELS)
    device = _device(ctx.params)
    prepare_output(
        out_dir,
        cfg.model_dump(mode="json"),
        [ctx.layout.inp(L.TEACHER), ctx.layout.inp(L.UNLABELED)],
        code="pseudo_labels",
    )
    start = time.perf_counter()
    stats = generate_pseudo_labels(
        checkpoint=teacher_source.teacher_model_path(ctx.layout.inp(L.TEACHER)),
        unlabeled_dir=ctx.layout.inp(L.UNLABELED),
        out_dir=out_dir,
        batch_size=cfg.batch_size,
        device=device,
        amp=cfg.amp,
        flip_tta=cfg.flip_tta,
        scales=cfg.scales,
    )
    preview = _preview(out_dir, ctx.layout.report_dir("pseudo_labels") / "preview.png")
    metrics = {**stats, "stage_seconds": time.perf_counter() - start}
    return _finish(ctx, "pseudo_labels", metrics, [out_dir], {"preview": preview})


def stage_student(ctx: StageContext, name: str) -> StageResult:
    if name not in ctx.params.students:
        raise KeyError(
            f"students.{name}: no such student in params (known: {sorted(ctx.params.students)})"
        )
    pseudo = [(ctx.layout.inp(L.UNLABELED), ctx.layout.inp(L.PSEUDO_LABELS))]
    return _train_stage(
        ctx,
        f"student_{name}",
        "student",
        ctx.params.students[name],
        ctx.layout.student(name),
        pseudo,
        f"students.{name}",
        f"student {name}",
    )


def train_control(ctx: StageContext, name: str, steps: int) -> StageResult:
    """Student `name`'s config trained on the labeled data alone for `steps` steps: the
    control that shows what the pseudo-labels add (same architecture, same step budget)."""
    if name not in ctx.params.students:
        raise KeyError(
            f"students.{name}: no such student in params (known: {sorted(ctx.params.students)})"
        )
    cfg = ctx.params.students[name]
    # Labeled epochs are shorter than pseudo-label epochs: enough of them, cut at `steps`.
    cfg = cfg.model_copy(update={"epochs": max(cfg.epochs, steps), "max_steps": steps})
    return _train_stage(
        ctx,
        f"control_{name}",
        "control",
        cfg,
        f"models/controls/{name}",
        None,
        f"students.{name}",
        f"control {name} (labeled only)",
        info={"control_of": f"student:{name}"},
    )


# --------------------------------------------------------------------------------------------
# agreement


def model_path(ctx: StageContext, entry: str) -> Path:
    """The file (or, for a teacher from Hugging Face, the folder) of an `agreement.experts`-style
    entry: 'teacher', 'student:<name>' or a path; an error names it when it does not exist."""
    if entry == "teacher":
        path = teacher_source.teacher_model_path(ctx.layout.inp(L.TEACHER))
    elif entry.startswith("student:"):
        student = ctx.layout.student(entry.split(":", 1)[1])
        path = ctx.layout.inp(student) / L.CHECKPOINT_FILE
    else:
        path = resolve_path(entry, ctx.layout.default_root)  # as params validation does
    if not path.exists():
        raise FileNotFoundError(f"{expert_name(entry)!r}: checkpoint {path} does not exist")
    return path


def expert_checkpoints(ctx: StageContext) -> dict[str, Path]:
    """The voters of `agreement.experts`, keyed by display name."""
    experts = {}
    for entry in ctx.params.agreement.experts:
        try:
            experts[expert_name(entry)] = model_path(ctx, entry)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"agreement expert {error}") from None
    return experts


def stage_agreement(ctx: StageContext) -> StageResult:
    from depth_core.data.dataset import load_arrays
    from depth_core.inference import predict_each
    from depth_core.voting.agreement import run_agreement

    cfg = ctx.params.agreement
    out_dir = ctx.layout.out(L.AGREEMENT)
    check_tracking(ctx.layout.default_root)
    start = time.perf_counter()
    eval_dir = ctx.layout.inp(L.TARGET_EVAL)
    arrays = load_arrays(eval_dir, limit=cfg.n_images)
    images = list(arrays["image"])
    # Each expert predicts as `depth-distill predict` would (one inference path, one precision).
    predictions = predict_each(
        expert_checkpoints(ctx), images, device=_device(ctx.params), batch_size=cfg.batch_size
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
        ctx.layout.default_root,
        "agreement",
        "report",
        ctx.pipeline_key,
        ctx.runner,
        {"device": ctx.params.device, **_flatten(cfg, "agreement")},
        ctx.tags,
        "expert agreement",
    ) as run:
        run.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        run.log_artifact(out_dir, "agreement_report")
        metrics["mlflow_run_id"] = run.run_id
    pictures = {p.stem: p for p in sorted(out_dir.glob("*.png"))}
    return _finish(ctx, "agreement", metrics, [out_dir], pictures, run.run_id)


def stage_export(ctx: StageContext, name: str) -> StageResult:
    """export@<student>: the student as ONNX (orchestration.export_stage)."""
    from orchestration.export_stage import stage_export as export_student

    return export_student(ctx, name)


def stage_benchmark_report(ctx: StageContext) -> StageResult:
    """benchmark_report: every model on the configured zero-shot benchmarks
    (orchestration.benchmark_stage)."""
    from orchestration.benchmark_stage import stage_benchmark_report as run_benchmark_report

    return run_benchmark_report(ctx)


# Stages run once per student (`--student NAME`).
PER_STUDENT_STAGES = {"student": stage_student, "export": stage_export}

STAGE_FUNCTIONS: dict[str, Callable[..., StageResult]] = {
    "labeled_data": stage_labeled_data,
    "unlabeled_images": stage_unlabeled_images,
    "target_eval": stage_target_eval,
    "teacher": stage_teacher,
    "pseudo_labels": stage_pseudo_labels,
    "student": stage_student,
    "agreement": stage_agreement,
    "export": stage_export,
    "benchmark_report": stage_benchmark_report,
}


def run_stage(name: str, ctx: StageContext, student: str | None = None) -> StageResult:
    """Run one stage while holding the lock on its outputs (every runner comes through here)."""
    if name not in STAGE_FUNCTIONS:
        raise KeyError(f"unknown stage {name!r}; stages: {', '.join(STAGE_NAMES)}")
    if name in PER_STUDENT_STAGES and not student:
        raise ValueError(f"stage {name!r} needs a student name (--student NAME)")
    with output_lock(ctx.layout.root, lock_name(name, student), ctx.runner):
        if name in PER_STUDENT_STAGES:
            return PER_STUDENT_STAGES[name](ctx, student)
        return STAGE_FUNCTIONS[name](ctx)


def recorded_run_id(ctx: StageContext, record: str) -> str | None:
    """The MLflow run a stage recorded in metrics/<record>.json; an experiment reads the default
    lineage's record for an output it did not make itself."""
    path = ctx.layout.inp(f"{L.METRICS}/{record}.json")
    return json.loads(path.read_text()).get("mlflow_run_id") if path.exists() else None


def read_metrics(layout: Layout, stage: str) -> dict:
    path = layout.metrics_file(stage)
    return json.loads(path.read_text()) if path.exists() else {}
