"""The training loop for the teacher and the students (Depth Anything recipe).

One function, `train`, read top to bottom: data -> model -> optimizer -> resume -> loop
(perturb pseudo inputs, forward, loss, backward, clip, step, log, checkpoint) -> validate
every epoch -> final files. The teacher is `train(..., pseudo=None)`; a student passes
pseudo-label sets and gets mixed batches, strong perturbations and CutMix on its pseudo
samples, and trimmed losses there. Every target map is median/MAD-normalised per image first
(TrainLossConfig.normalize_target), so ground truth and teacher labels of any scale weigh alike.
Under torchrun the same call runs DistributedDataParallel.

Files in `out_dir`:
    model.safetensors   final weights (written atomically, last)
    checkpoints/        train_state.pt + the model of the last step, for resume
    history.json        per-epoch metrics and per-step losses
    loss_curve.png, val_metrics.png, samples.png
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from depth_core.data.augment import build_augment
from depth_core.data.dataset import (
    MixedDataset,
    PseudoLabelDataset,
    ShardDataset,
    derive_seed,
    load_arrays,
)
from depth_core.data.manifest import read_summary
from depth_core.device import autocast, pick_device
from depth_core.evaluation import evaluate_sets
from depth_core.losses import depth_loss, masked_median, normalize_median
from depth_core.models import build_model, save_checkpoint
from depth_core.plots import plot_depth_samples, plot_epoch_metrics, plot_loss_curve
from depth_core.training import distributed as dist_utils
from depth_core.training.checkpointing import load_train_state, restore_rng, save_train_state
from depth_core.training.config import PerturbConfig, TrainConfig, TrainLossConfig
from depth_core.training.optim import build_optimizer, build_scheduler
from depth_core.training.perturb import perturb_pseudo_batch, region_weighted_loss
from depth_core.training.precision import resolve_precision

logger = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
CHECKPOINT_DIR = "checkpoints"
HISTORY_FILE = "history.json"
MAX_BAD_STEPS = 10

LogFn = Callable[[dict[str, float], int], None]


@dataclass
class TrainResult:
    """Final metrics (same keys for teacher and students), per-epoch history, final weights."""

    metrics: dict[str, float]
    history: list[dict[str, float]]
    checkpoint: Path
    model: nn.Module | None = field(default=None, repr=False)  # this rank's trained model


@dataclass
class LoopState:
    """Everything the loop needs to continue exactly where it stopped."""

    epoch: int = 0
    step: int = 0
    batch_in_epoch: int = 0
    epoch_loss_sum: float = 0.0
    epoch_loss_count: int = 0
    bad_steps: int = 0
    train_seconds: float = 0.0
    train_images: int = 0
    wall_seconds: float = 0.0
    precision: str = ""
    history: list[dict[str, float]] = field(default_factory=list)
    steps_log: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


# ---------------------------------------------------------------------------------- data


class TrainData:
    """The training stream of one rank: labeled only (teacher) or labeled + pseudo mixed."""

    def __init__(
        self,
        config: TrainConfig,
        labeled_dirs: list[Path],
        pseudo: list[tuple[Path, Path]] | None,
        ctx: dist_utils.DistContext,
    ) -> None:
        if len(labeled_dirs) != 1:
            raise ValueError(
                f"labeled_dirs: exactly one labeled dataset is supported, got {len(labeled_dirs)}"
            )
        if pseudo is not None and len(pseudo) != 1:
            raise ValueError(
                f"pseudo: exactly one (unlabeled_dir, pseudo_dir) pair is supported, got {len(pseudo)}"
            )
        self.batch_size = config.batch_size
        self.num_workers = config.num_workers
        common = {
            "shuffle": True,
            "seed": config.seed,
            "rank": ctx.rank,
            "world_size": ctx.world_size,
            "transform": build_augment(config.augment, seed=config.seed),
            "batch_size": config.batch_size,
            "drop_last": True,
        }
        labeled_dir = Path(labeled_dirs[0])
        if pseudo is None:
            self.dataset = ShardDataset(labeled_dir, **common)
            self.sources = [labeled_dir]
        else:
            images_dir, pseudo_dir = (Path(p) for p in pseudo[0])
            n_labeled, n_pseudo = config.mix.labeled, config.mix.pseudo
            labeled = ShardDataset(labeled_dir, **common) if n_labeled else None
            pseudo_set = PseudoLabelDataset(images_dir, pseudo_dir, **common) if n_pseudo else None
            self.dataset = MixedDataset(
                labeled,
                pseudo_set,
                ratio=(n_labeled, n_pseudo),
                batch_size=config.batch_size,
                drop_last=True,
            )
            self.sources = [d for d, n in ((labeled_dir, n_labeled), (images_dir, n_pseudo)) if n]
            if n_pseudo:
                self.sources.append(pseudo_dir)
        self.image_size = self._common_image_size(config)

    def _common_image_size(self, config: TrainConfig) -> tuple[int, int]:
        """Image size of every batch; datasets of different sizes need augment.size to batch."""
        if config.augment.size is not None:
            return tuple(config.augment.size)  # type: ignore[return-value]
        sizes = {}
        for directory in self.sources:
            summary = read_summary(directory)
            if summary.get("kind") != "pseudo":
                sizes[str(directory)] = (summary.get("height"), summary.get("width"))
        distinct = set(sizes.values())
        if len(distinct) > 1 or None in next(iter(distinct)):
            raise ValueError(
                f"training images differ in size ({sizes}); set augment.size to crop/resize "
                "every sample to one training resolution"
            )
        return next(iter(distinct))  # type: ignore[return-value]

    def _worker_lengths(self, epoch: int) -> list[int]:
        workers = max(1, self.num_workers)
        if isinstance(self.dataset, MixedDataset):
            self.dataset.set_epoch(epoch)
            counts = self.dataset.primary.worker_counts(epoch, workers)
            return [self.dataset._worker_length(n) for n in counts]
        return self.dataset.worker_counts(epoch, workers)

    def batches_in_epoch(self, epoch: int) -> int:
        return sum(n // self.batch_size for n in self._worker_lengths(epoch))

    def loader(self, epoch: int, skip_batches: int, pin_memory: bool) -> DataLoader:
        """A fresh loader for `epoch` that starts after `skip_batches` already-trained batches."""
        self.dataset.set_epoch(epoch, skip_batches * self.batch_size)
        return DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            drop_last=True,
            num_workers=self.num_workers,
            pin_memory=pin_memory,
            persistent_workers=False,
        )


# ---------------------------------------------------------------------------------- step


def batch_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    is_pseudo: torch.Tensor,
    pasted: torch.Tensor,
    config: TrainLossConfig,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Labeled and pseudo samples scored separately, weighted by their share of the batch.

    Each group is one affine-invariant batch loss; pseudo samples drop their largest-loss
    pixels (`pseudo_trim`) and have their CutMix regions aligned separately.
    """
    n = len(pred)
    total = pred.new_zeros(())
    parts = {"ssi": pred.new_zeros(()), "gradient": pred.new_zeros(())}
    for pseudo_group, trim in ((False, config.labeled_trim), (True, config.pseudo_trim)):
        selected = is_pseudo == pseudo_group
        count = int(selected.sum())
        if count == 0:
            continue
        loss_fn = partial(depth_loss, **config.loss_kwargs(), trim=trim, return_parts=True)
        args = (pred[selected], target[selected], mask[selected])
        if pseudo_group:
            group_total, group_parts = region_weighted_loss(loss_fn, *args, pasted[selected])
        else:
            group_total, group_parts = loss_fn(*args)
        weight = count / n
        total = total + weight * group_total
        parts = {k: parts[k] + weight * group_parts[k] for k in parts}
    if config.scale_anchor > 0:
        total = total + config.scale_anchor * scale_anchor_penalty(pred, mask)
    return total, parts


def scale_anchor_penalty(pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(log of each image's median valid prediction)^2, averaged over images.

    The affine-invariant losses cannot see the output's scale, so optimisers let it drift
    (measured: to 1e16 within 400 AdamW steps from scratch), which wastes precision in bf16
    and overflows float16 pseudo-labels. This gauge term pins the median near 1; the depth
    losses are blind to it, so it does not compete with learning the structure.

    The weight matters for the softplus head, which is smooth only within a few units of 0:
    at weight 1e-3 the students' medians drifted to 150-1000, far pixels sat at
    pre-activations of -100 to -3000 and 18% of the vit student's outputs were exactly 0
    (tied pairs count as wrong). At 0.1 the pre-activations stay within -4..1 and that
    student's target pair accuracy rose from 0.718 to 0.730.
    """
    level = masked_median(pred.float().clamp_min(0), mask)
    return torch.log(level + 1e-6).square().mean()


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    config: TrainConfig,
    device: torch.device,
    precision: str,
    generator: torch.Generator,
    perturb: PerturbConfig | None = None,
) -> dict[str, float]:
    """One optimisation step on one batch; returns the logged scalars (loss parts, grad norm).

    `perturb` overrides `config.perturb` (the trainer passes the step's schedule).
    """
    image = batch["image"].to(device, non_blocking=True)
    target = batch["disparity"].to(device, non_blocking=True)
    mask = batch["mask"].to(device, non_blocking=True)
    is_pseudo = torch.as_tensor(batch["pseudo"], dtype=torch.bool, device=device)
    if config.loss.normalize_target:  # GT and teacher labels on one scale (see TrainLossConfig)
        target = normalize_median(target, mask)
    pasted = torch.zeros_like(mask)
    if is_pseudo.any():  # strong perturbations: the student sees hard inputs, clean labels
        index = is_pseudo.nonzero().squeeze(1)
        hard = perturb_pseudo_batch(
            image[index],
            target[index],
            mask[index],
            perturb if perturb is not None else config.perturb,
            generator,
        )
        image[index], target[index], mask[index], pasted[index] = (
            hard.image,
            hard.target,
            hard.mask,
            hard.pasted,
        )
    if config.channels_last:
        image = image.contiguous(memory_format=torch.channels_last)

    with autocast(device, precision):
        pred = model(image)
    loss, parts = batch_loss(pred.float(), target, mask, is_pseudo, pasted, config.loss)

    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    # The norm is computed after DDP's all-reduce, so every rank takes the same decision.
    max_norm = config.optim.grad_clip if config.optim.grad_clip is not None else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    finite = bool(torch.isfinite(grad_norm))
    if finite:
        optimizer.step()
    return {
        "train/loss": float(loss.detach()),
        "train/ssi": float(parts["ssi"]),
        "train/gradient": float(parts["gradient"]),
        "train/grad_norm": float(grad_norm),
        "finite": float(finite),
    }


# ---------------------------------------------------------------------------------- train


def train(
    config: TrainConfig,
    out_dir: Path,
    labeled_dirs: list[Path],
    val_sets: dict[str, Path],
    pseudo: list[tuple[Path, Path]] | None = None,
    log: LogFn | None = None,
    resume: bool = True,
    device: str | torch.device | None = None,
) -> TrainResult:
    """Train one model (teacher: `pseudo=None`; student: pseudo-label sets given).

    `log(metrics, step)` receives per-step train/loss, train/ssi, train/gradient, train/lr,
    train/grad_norm and per-epoch val/<set>/<metric>; it is only called on rank 0. With
    `resume`, a matching checkpoint in out_dir/checkpoints is continued exactly (optimizer,
    schedule, RNG, data position); a checkpoint of a different configuration is ignored.
    """
    base_device = pick_device(device if device is not None else config.device)
    ctx = dist_utils.setup(base_device)
    try:
        return _train(
            config,
            Path(out_dir),
            labeled_dirs,
            val_sets,
            pseudo,
            log,
            resume,
            dist_utils.local_device(base_device, ctx),
            ctx,
        )
    finally:
        dist_utils.teardown(ctx)


def _train(
    config, out_dir, labeled_dirs, val_sets, pseudo, log, resume, device, ctx
) -> TrainResult:
    started = time.perf_counter()
    ckpt_dir = out_dir / CHECKPOINT_DIR
    if ctx.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    for name, path in val_sets.items():
        if not Path(path).is_dir():
            raise FileNotFoundError(f"val_sets[{name!r}]: dataset directory {path} does not exist")

    # ---- data: the epoch length is the same on every rank (the shortest rank's)
    data = TrainData(config, labeled_dirs, pseudo, ctx)
    epoch_batches = [data.batches_in_epoch(e) for e in range(config.epochs)]
    epoch_batches = dist_utils.min_across_ranks(epoch_batches, ctx, device)
    if min(epoch_batches) == 0:
        raise ValueError(
            f"an epoch holds fewer than batch_size={config.batch_size} samples per process; "
            f"use a smaller batch_size or more data ({[str(s) for s in data.sources]})"
        )
    total_steps = sum(epoch_batches)
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)

    # ---- model, optimizer, schedule (identical initial weights on every rank)
    torch.manual_seed(config.seed)
    model = build_model(config.model).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, config.optim)
    scheduler = build_scheduler(optimizer, total_steps, config.optim)
    fingerprint = _fingerprint(config, data, val_sets, total_steps)

    # ---- resume from the last checkpoint of the same configuration
    state = LoopState()
    loaded = load_train_state(ckpt_dir) if resume else None
    if loaded is not None and loaded[0].get("fingerprint") != fingerprint:
        logger.warning(
            "%s: checkpoint of a different configuration or data; starting afresh", ckpt_dir
        )
        loaded = None
    if loaded is not None:
        saved, saved_model = loaded
        model.load_state_dict(saved_model.state_dict())
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = LoopState(**saved["loop"])
        if ctx.is_main:
            restore_rng(saved["rng"])
        else:
            torch.manual_seed(derive_seed(config.seed, ctx.rank, state.step))
        logger.info(
            "resuming from step %d (epoch %d, batch %d)",
            state.step,
            state.epoch,
            state.batch_in_epoch,
        )
    else:
        torch.manual_seed(derive_seed(config.seed, ctx.rank))
    if not state.precision:
        state.precision = resolve_precision(config.precision, device)
    logger.info("training in %s on %s", state.precision, device)
    ddp_model = dist_utils.wrap(model, ctx, device)

    def emit(values: dict[str, float], step: int) -> None:
        if log is not None and ctx.is_main:
            log(values, step)

    def checkpoint() -> None:
        if ctx.is_main:
            save_train_state(
                ckpt_dir,
                model,
                {
                    "step": state.step,
                    "fingerprint": fingerprint,
                    "loop": state.to_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                },
            )
        dist_utils.barrier(ctx)

    # ---- the loop
    progress = tqdm(
        total=total_steps,
        initial=state.step,
        desc="train",
        unit="step",
        disable=not ctx.is_main,
        dynamic_ncols=True,
        mininterval=2.0,
    )
    session_start = time.perf_counter()
    while state.epoch < config.epochs and state.step < total_steps or _epoch_unfinished(state):
        epoch = state.epoch
        if state.batch_in_epoch < epoch_batches[epoch] and state.step < total_steps:
            ddp_model.train()
            loader = data.loader(epoch, state.batch_in_epoch, pin_memory=device.type == "cuda")
            step_start = time.perf_counter()
            for batch in loader:
                if state.batch_in_epoch >= epoch_batches[epoch] or state.step >= total_steps:
                    break
                lr = optimizer.param_groups[0]["lr"]
                generator = torch.Generator().manual_seed(
                    derive_seed(config.seed, ctx.rank, state.step, 7)
                )
                out = train_step(
                    ddp_model,
                    optimizer,
                    batch,
                    config,
                    device,
                    state.precision,
                    generator,
                    perturb=config.perturb.for_step(state.step, total_steps),
                )
                scheduler.step()
                state.step += 1
                state.batch_in_epoch += 1
                state.train_images += config.batch_size * ctx.world_size
                if out.pop("finite"):  # the update was applied
                    state.bad_steps = 0
                    values = dist_utils.mean_across_ranks(out, ctx, device)
                    values["train/lr"] = lr
                    state.epoch_loss_sum += values["train/loss"]
                    state.epoch_loss_count += 1
                    if state.step % config.log_every == 0 or state.step == total_steps:
                        state.steps_log.append({"step": state.step, **values})
                        emit(values, state.step)
                    progress.set_postfix(
                        epoch=epoch + 1, loss=f"{values['train/loss']:.4f}", refresh=False
                    )
                else:  # skipped: a non-finite gradient would poison the weights
                    state.bad_steps += 1
                    if state.bad_steps >= MAX_BAD_STEPS:
                        raise FloatingPointError(
                            f"{MAX_BAD_STEPS} consecutive steps with non-finite gradients (last at "
                            f"step {state.step}); lower optim.lr or use precision fp32"
                        )
                state.train_seconds += time.perf_counter() - step_start
                progress.update(1)
                step_start = time.perf_counter()
                if state.step % config.checkpoint_every == 0:
                    state.wall_seconds += time.perf_counter() - session_start
                    session_start = time.perf_counter()
                    checkpoint()
                    step_start = time.perf_counter()

        # ---- end of epoch: validate, record, checkpoint
        row = {
            "epoch": epoch + 1,
            "step": state.step,
            "train/loss": state.epoch_loss_sum / max(state.epoch_loss_count, 1),
        }
        row.update(_validate(model, val_sets, config, device, ctx))
        emit({k: v for k, v in row.items() if k not in ("epoch", "step")}, state.step)
        state.history.append(row)
        state.epoch += 1
        state.batch_in_epoch = 0
        state.epoch_loss_sum, state.epoch_loss_count = 0.0, 0
        state.wall_seconds += time.perf_counter() - session_start
        session_start = time.perf_counter()
        checkpoint()
        if ctx.is_main:
            _write_history(out_dir, state, config)
        if state.step >= total_steps:
            break

    # ---- final files
    progress.close()
    dist_utils.assert_in_sync(ddp_model, ctx, device)
    state.wall_seconds += time.perf_counter() - session_start
    metrics = _final_metrics(state)
    final_path = out_dir / MODEL_FILE
    if ctx.is_main:
        _write_history(out_dir, state, config, plots=True)
        _write_samples(out_dir, model, val_sets, config, device)
        save_checkpoint(
            final_path,
            model,
            metadata={
                "train_config": config.model_dump(mode="json"),
                "metrics": {k: v for k, v in metrics.items() if math.isfinite(v)},
            },
        )
    dist_utils.barrier(ctx)
    logger.info(
        "trained %d steps in %.1f s (this session %.1f s)",
        state.step,
        state.wall_seconds,
        time.perf_counter() - started,
    )
    return TrainResult(metrics=metrics, history=state.history, checkpoint=final_path, model=model)


def _epoch_unfinished(state: LoopState) -> bool:
    """A run killed after its last step but before that epoch's validation must still finish it."""
    return state.batch_in_epoch > 0


# ---------------------------------------------------------------------------------- helpers


def _fingerprint(
    config: TrainConfig, data: TrainData, val_sets: dict[str, Path], total_steps: int
) -> str:
    """What a checkpoint must match to be resumed: configuration, data and schedule length."""
    return json.dumps(
        {
            "config": config.model_dump(mode="json"),
            "sources": [os.path.abspath(s) for s in data.sources],
            "val_sets": sorted(val_sets),
            "total_steps": total_steps,
        },
        sort_keys=True,
    )


def _validate(model, val_sets, config, device, ctx) -> dict[str, float]:
    """val/<set>/<metric> on rank 0 (the others wait); the same keys for teacher and student.

    Always in fp32, whatever the training precision, so every model's numbers are comparable
    with each other and with `depth-distill evaluate`.
    """
    values: dict[str, float] = {}
    if ctx.is_main:
        values = evaluate_sets(
            model, val_sets, config.batch_size, device, config.val_max_images, config.seed
        )
    dist_utils.barrier(ctx)
    return values


def _final_metrics(state: LoopState) -> dict[str, float]:
    last = state.history[-1] if state.history else {}
    metrics = {k: float(v) for k, v in last.items() if k.startswith(("val/", "train/"))}
    metrics.update(
        {
            "train/steps": float(state.step),
            "train/epochs": float(len(state.history)),
            "train/wall_seconds": state.wall_seconds,
            "train/images_per_second": state.train_images / max(state.train_seconds, 1e-9),
            "train/bf16": float(state.precision == "bf16"),
        }
    )
    return metrics


def _write_history(
    out_dir: Path, state: LoopState, config: TrainConfig, plots: bool = False
) -> None:
    """history.json after every epoch (cheap, for watching a run); the pictures at the end."""
    payload = {
        "precision": state.precision,
        "epochs": state.history,
        "steps": state.steps_log,
        "config": config.model_dump(mode="json"),
    }
    tmp = out_dir / f".{HISTORY_FILE}.tmp"
    tmp.write_text(json.dumps(payload, indent=1, allow_nan=True))
    os.replace(tmp, out_dir / HISTORY_FILE)
    if plots:
        plot_loss_curve(state.steps_log, out_dir / "loss_curve.png")
        plot_epoch_metrics(state.history, out_dir / "val_metrics.png")


@torch.inference_mode()
def _write_samples(out_dir, model, val_sets, config, device) -> None:
    """image | prediction | ground truth for the first images of the first validation set."""
    if config.n_samples == 0 or not val_sets:
        return
    arrays = load_arrays(
        next(iter(val_sets.values())), limit=config.n_samples, keys=["image", "depth", "mask"]
    )
    image = torch.from_numpy(arrays["image"]).permute(0, 3, 1, 2).float().div(255.0).to(device)
    model.eval()
    pred = model(image).float().cpu().numpy()
    depth, mask = arrays["depth"], arrays["mask"].astype(bool) & (arrays["depth"] > 0)
    gt = [
        torch.where(torch.from_numpy(m), 1.0 / torch.from_numpy(d).clamp(min=1e-6), 0.0).numpy()
        for d, m in zip(depth, mask)
    ]
    plot_depth_samples(
        list(arrays["image"]), list(pred), gt, out_dir / "samples.png", masks=list(mask)
    )
