"""The training loop for the teacher and the students (Depth Anything recipe).

`train` reads top to bottom: setup (data, schedule, model, optimizer) -> resume -> loop over
epochs (each step: perturb pseudo inputs, forward, loss, backward, clip, step; log every
`log_every` steps; checkpoint every `checkpoint_every`) -> validate every epoch -> final files.
The teacher is `train(..., pseudo=None)`; a student passes pseudo-label sets and gets mixed
batches, strong perturbations and CutMix on its pseudo samples, and trimmed losses there. Every
target map is median/MAD-normalised per image first (TrainLossConfig.normalize_target), so
ground truth and teacher labels of any scale weigh alike. Under torchrun the same call runs
DistributedDataParallel.

A step waits for the device once, to decide whether its gradient is finite (see `train_step`);
its loss parts and gradient norm stay on the device until the next log call (`TrainMeters`).

Files in `out_dir`:
    model.safetensors   final weights (written atomically, last)
    checkpoints/        train_state.pt + the model of the last step, for resume
    history.json        per-epoch metrics and the logged steps' losses
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

from depth_core import distributed as dist_utils
from depth_core.atomic_io import write_json
from depth_core.data.augment import build_augment
from depth_core.data.dataset import (
    MixedDataset,
    PseudoLabelDataset,
    ShardDataset,
    derive_seed,
)
from depth_core.data.manifest import read_summary
from depth_core.device import autocast, pick_device
from depth_core.evaluation import evaluate_sets
from depth_core.losses import depth_loss, masked_median, normalize_median
from depth_core.models import build_model, save_checkpoint
from depth_core.models.checkpoint import CHECKPOINT_FILE
from depth_core.plots import plot_epoch_metrics, plot_loss_curve
from depth_core.samples_picture import samples_picture
from depth_core.training.checkpointing import load_train_state, restore_rng, save_train_state
from depth_core.training.config import PerturbConfig, TrainConfig, TrainLossConfig
from depth_core.training.meters import STEP_KEYS, Stopwatch, TrainMeters
from depth_core.training.optim import build_optimizer, build_scheduler
from depth_core.training.perturb import perturb_pseudo_batch, region_weighted_loss
from depth_core.training.precision import resolve_precision

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
HISTORY_FILE = "history.json"
MAX_BAD_STEPS = 10
# The step log travels in every checkpoint; past this many rows it keeps every other one.
MAX_STEP_ROWS = 1000

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
    """Everything the loop needs to continue exactly where it stopped (saved in checkpoints)."""

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
    step_rows_seen: int = 0
    step_row_stride: int = 1

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def record_step_row(self, row: dict[str, float]) -> None:
        """Add a logged step to `steps_log`, which stays at most MAX_STEP_ROWS rows long.

        When it would grow past that, every other row goes and from then on only every
        `step_row_stride`-th logged step is kept: the loss curve still spans the whole run,
        and a long run's checkpoints stay small. The rule depends only on the sequence of
        logged steps, so a resumed run keeps the same rows as an uninterrupted one.
        """
        if self.step_rows_seen % self.step_row_stride == 0:
            self.steps_log.append(row)
            if len(self.steps_log) > MAX_STEP_ROWS:
                del self.steps_log[1::2]
                self.step_row_stride *= 2
        self.step_rows_seen += 1


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


@dataclass(frozen=True)
class StepOutcome:
    """One step's logged scalars, still on the device, and whether its update was applied."""

    values: torch.Tensor  # float64 (len(STEP_KEYS),): loss, ssi, gradient, grad_norm; detached
    applied: bool  # False: the gradient was not finite and the update was skipped


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
    pixels (`pseudo_trim`) and have their CutMix regions aligned separately. `is_pseudo` is
    read on the host (the data loader's flags), so splitting the batch never waits for the
    device.
    """
    flags = torch.as_tensor(is_pseudo, dtype=torch.bool, device="cpu")
    n = len(flags)
    total = pred.new_zeros(())
    parts = {"ssi": pred.new_zeros(()), "gradient": pred.new_zeros(())}
    for pseudo_group, trim in ((False, config.labeled_trim), (True, config.pseudo_trim)):
        selected = flags == pseudo_group
        count = int(selected.sum())
        if count == 0:
            continue
        rows = _rows(selected, pred.device)
        loss_fn = partial(depth_loss, **config.loss_kwargs(), trim=trim, return_parts=True)
        args = (pred[rows], target[rows], mask[rows])
        if pseudo_group:
            group_total, group_parts = region_weighted_loss(loss_fn, *args, pasted[rows])
        else:
            group_total, group_parts = loss_fn(*args)
        weight = count / n
        total = total + weight * group_total
        parts = {k: parts[k] + weight * group_parts[k] for k in parts}
    if config.scale_anchor > 0:
        total = total + config.scale_anchor * scale_anchor_penalty(pred, mask)
    return total, parts


def _rows(selected: torch.Tensor, device: torch.device) -> slice | torch.Tensor:
    """An index of the rows a host-side bool mask selects: every row as a slice (no copy),
    else their positions, sent to `device` without waiting for it."""
    if bool(selected.all()):
        return slice(None)
    return selected.nonzero().squeeze(1).to(device, non_blocking=True)


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
) -> StepOutcome:
    """One optimisation step on one batch.

    The step waits for the device once, to read whether the gradient norm is finite: skipping
    a poisoned AdamW update exactly (weights, moments and step count untouched) needs that
    decision on the host, and it is taken once all of the step's work is queued. The logged
    scalars stay on the device. `perturb` overrides `config.perturb` (the trainer passes the
    step's schedule).
    """
    image = batch["image"].to(device, non_blocking=True)
    target = batch["disparity"].to(device, non_blocking=True)
    mask = batch["mask"].to(device, non_blocking=True)
    is_pseudo = torch.as_tensor(batch["pseudo"], dtype=torch.bool, device="cpu")
    if config.loss.normalize_target:  # GT and teacher labels on one scale (see TrainLossConfig)
        target = normalize_median(target, mask)
    pasted = torch.zeros_like(mask)
    if is_pseudo.any():  # strong perturbations: the student sees hard inputs, clean labels
        index = is_pseudo.nonzero().squeeze(1).to(device, non_blocking=True)
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
    applied = bool(torch.isfinite(grad_norm))
    if applied:
        optimizer.step()
    scalars = {
        "train/loss": loss,
        "train/ssi": parts["ssi"],
        "train/gradient": parts["gradient"],
        "train/grad_norm": grad_norm,
    }
    values = torch.stack([scalars[key].detach().double() for key in STEP_KEYS])
    return StepOutcome(values, applied)


# ---------------------------------------------------------------------------------- train


@dataclass(frozen=True)
class Run:
    """What one `train` call was asked to do; fixed for the whole run."""

    config: TrainConfig
    out_dir: Path
    val_sets: dict[str, Path]
    log: LogFn | None
    device: torch.device
    ctx: dist_utils.DistContext
    started: float = field(default_factory=time.perf_counter)

    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / CHECKPOINT_DIR

    def emit(self, values: dict[str, float], step: int) -> None:
        """The caller's `log` callback, on rank 0 only."""
        if self.log is not None and self.ctx.is_main:
            self.log(values, step)


@dataclass(frozen=True)
class Schedule:
    """Batches per epoch (the same on every rank: the shortest rank's) and the run's steps."""

    epoch_batches: list[int]
    total_steps: int


@dataclass(frozen=True)
class Learner:
    """The model, its optimizer and its learning-rate schedule."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler


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

    `log(metrics, step)` is only called on rank 0. It receives train/loss, train/ssi,
    train/gradient and train/grad_norm (their means over the steps since the previous call)
    with train/lr, every `log_every` steps, before each checkpoint and after the last step;
    and per epoch the epoch's train/loss and val/<set>/<metric>. With `resume`, a matching
    checkpoint in out_dir/checkpoints is continued exactly (optimizer, schedule, RNG, data
    position); a checkpoint of a different configuration is ignored.
    """
    base_device = pick_device(device if device is not None else config.device)
    ctx = dist_utils.setup(base_device)
    try:
        run = Run(
            config, Path(out_dir), val_sets, log, dist_utils.local_device(base_device, ctx), ctx
        )
        return _train(run, labeled_dirs, pseudo, resume)
    finally:
        dist_utils.teardown(ctx)


def _train(
    run: Run, labeled_dirs: list[Path], pseudo: list[tuple[Path, Path]] | None, resume: bool
) -> TrainResult:
    """setup -> resume -> loop (train an epoch, validate it) -> final files."""
    _check_val_sets(run.val_sets)
    if run.ctx.is_main:
        run.out_dir.mkdir(parents=True, exist_ok=True)
    data = TrainData(run.config, labeled_dirs, pseudo, run.ctx)
    schedule = _agree_on_schedule(run, data)
    learner = _build_learner(run, schedule.total_steps)
    fingerprint = _fingerprint(run.config, data, run.val_sets, schedule.total_steps)
    state = _resume_or_start(run, learner, fingerprint, resume)
    if not state.precision:
        state.precision = resolve_precision(run.config.precision, run.device)
    logger.info("training in %s on %s", state.precision, run.device)

    loop = Loop(run, data, schedule, learner, state, fingerprint)
    while loop.unfinished():
        loop.train_epoch()
        loop.end_epoch()
    return loop.finish()


def _check_val_sets(val_sets: dict[str, Path]) -> None:
    for name, path in val_sets.items():
        if not Path(path).is_dir():
            raise FileNotFoundError(f"val_sets[{name!r}]: dataset directory {path} does not exist")


def _agree_on_schedule(run: Run, data: TrainData) -> Schedule:
    """Every rank takes as many steps per epoch as the shortest rank has batches."""
    config = run.config
    local = [data.batches_in_epoch(e) for e in range(config.epochs)]
    epoch_batches = dist_utils.min_across_ranks(local, run.ctx, run.device)
    if min(epoch_batches) == 0:
        raise ValueError(
            f"an epoch holds fewer than batch_size={config.batch_size} samples per process; "
            f"use a smaller batch_size or more data ({[str(s) for s in data.sources]})"
        )
    total_steps = sum(epoch_batches)
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    return Schedule(epoch_batches, total_steps)


def _build_learner(run: Run, total_steps: int) -> Learner:
    """Model, optimizer and schedule, with identical initial weights on every rank."""
    config = run.config
    torch.manual_seed(config.seed)
    model = build_model(config.model).to(run.device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, config.optim)
    return Learner(model, optimizer, build_scheduler(optimizer, total_steps, config.optim))


def _resume_or_start(run: Run, learner: Learner, fingerprint: str, resume: bool) -> LoopState:
    """The loop state of the last checkpoint of this configuration, with the weights, optimizer,
    schedule and RNG restored from it; a fresh state (RNG seeded per rank) when there is none."""
    loaded = load_train_state(run.checkpoint_dir) if resume else None
    if loaded is not None and loaded[0].get("fingerprint") != fingerprint:
        logger.warning(
            "%s: checkpoint of a different configuration or data; starting afresh",
            run.checkpoint_dir,
        )
        loaded = None
    if loaded is None:
        torch.manual_seed(derive_seed(run.config.seed, run.ctx.rank))
        return LoopState()
    saved, saved_model = loaded
    learner.model.load_state_dict(saved_model.state_dict())
    learner.optimizer.load_state_dict(saved["optimizer"])
    learner.scheduler.load_state_dict(saved["scheduler"])
    state = LoopState(**saved["loop"])
    if run.ctx.is_main:
        restore_rng(saved["rng"])
    else:
        torch.manual_seed(derive_seed(run.config.seed, run.ctx.rank, state.step))
    logger.info(
        "resuming from step %d (epoch %d, batch %d)", state.step, state.epoch, state.batch_in_epoch
    )
    return state


class Loop:
    """The epochs and steps of one run. Whatever resume needs lives in `state`; the device-side
    sums (`meters`) and the clocks are copied into it before each checkpoint."""

    def __init__(
        self,
        run: Run,
        data: TrainData,
        schedule: Schedule,
        learner: Learner,
        state: LoopState,
        fingerprint: str,
    ) -> None:
        self.run, self.data, self.schedule = run, data, schedule
        self.learner, self.state, self.fingerprint = learner, state, fingerprint
        self.network = dist_utils.wrap(learner.model, run.ctx, run.device)  # DDP under torchrun
        self.meters = TrainMeters(run.device, run.ctx, state.epoch_loss_sum)
        self.wall = Stopwatch(state.wall_seconds)  # the whole loop: steps, checkpoints, validation
        self.stepping = Stopwatch(state.train_seconds)  # loading batches and training on them
        self.progress = tqdm(
            total=schedule.total_steps,
            initial=state.step,
            desc="train",
            unit="step",
            disable=not run.ctx.is_main,
            dynamic_ncols=True,
            mininterval=2.0,
        )
        self.wall.start()

    def unfinished(self) -> bool:
        """Steps left to train, or an epoch trained but not validated (killed after its end)."""
        state = self.state
        steps_left = state.epoch < self.run.config.epochs and state.step < self.schedule.total_steps
        return steps_left or state.batch_in_epoch > 0

    def _batches_left(self) -> bool:
        state = self.state
        return (
            state.batch_in_epoch < self.schedule.epoch_batches[state.epoch]
            and state.step < self.schedule.total_steps
        )

    def train_epoch(self) -> None:
        """The current epoch's batches not trained yet; a checkpoint every `checkpoint_every`."""
        if not self._batches_left():
            return
        self.network.train()
        pin_memory = self.run.device.type == "cuda"
        loader = self.data.loader(self.state.epoch, self.state.batch_in_epoch, pin_memory)
        self.stepping.start()
        for batch in loader:
            if not self._batches_left():
                break
            self.step(batch)
            if self.state.step % self.run.config.checkpoint_every == 0:
                with self.stepping.paused():
                    self.checkpoint()
        self.stepping.stop()

    def step(self, batch: dict[str, torch.Tensor]) -> None:
        """One training step and its bookkeeping: counters, the skip rule, logging."""
        config, ctx, state = self.run.config, self.run.ctx, self.state
        total_steps = self.schedule.total_steps
        lr = self.learner.optimizer.param_groups[0]["lr"]
        outcome = train_step(
            self.network,
            self.learner.optimizer,
            batch,
            config,
            self.run.device,
            state.precision,
            torch.Generator().manual_seed(derive_seed(config.seed, ctx.rank, state.step, 7)),
            perturb=config.perturb.for_step(state.step, total_steps),
        )
        self.learner.scheduler.step()
        state.step += 1
        state.batch_in_epoch += 1
        state.train_images += config.batch_size * ctx.world_size
        if outcome.applied:
            state.bad_steps = 0
            state.epoch_loss_count += 1
            self.meters.add(outcome.values, lr)
        else:
            self._count_skipped_step()
        if state.step % config.log_every == 0 or state.step == total_steps:
            self.log_train_metrics()
        self.progress.update(1)

    def _count_skipped_step(self) -> None:
        """A non-finite gradient would poison the weights: that update was skipped. Many in a
        row mean the run diverged."""
        self.state.bad_steps += 1
        if self.state.bad_steps >= MAX_BAD_STEPS:
            raise FloatingPointError(
                f"{MAX_BAD_STEPS} consecutive steps with non-finite gradients (last at "
                f"step {self.state.step}); lower optim.lr or use precision fp32"
            )

    def log_train_metrics(self) -> None:
        """Read the train/* means since the last call (the host's one wait for them), record
        them in the step log and hand them to `log`."""
        values = self.meters.pop_window()
        if values is None:  # every step since the last call was skipped
            return
        self.state.record_step_row({"step": self.state.step, **values})
        self.run.emit(values, self.state.step)
        loss = f"{values['train/loss']:.4f}"
        self.progress.set_postfix(epoch=self.state.epoch + 1, loss=loss, refresh=False)

    def end_epoch(self) -> None:
        """Validate, record the epoch's row, checkpoint and rewrite history.json."""
        run, state = self.run, self.state
        self.log_train_metrics()
        loss_sum = self.meters.epoch_loss_sum()
        row = {
            "epoch": state.epoch + 1,
            "step": state.step,
            "train/loss": loss_sum / max(state.epoch_loss_count, 1),
        }
        row.update(_validate(run, self.learner.model))
        run.emit({k: v for k, v in row.items() if k not in ("epoch", "step")}, state.step)
        state.history.append(row)
        state.epoch += 1
        state.batch_in_epoch = 0
        state.epoch_loss_count = 0
        self.meters.new_epoch()
        self.checkpoint()
        if run.ctx.is_main:
            _write_history(run.out_dir, state, run.config)

    def checkpoint(self) -> None:
        """Save what resume needs; rank 0 writes, every rank waits for it.

        The train/* window is logged first, so a checkpoint never holds a half-summed window
        and a resumed run logs the same values at the same steps as an uninterrupted one.
        """
        self.log_train_metrics()
        self.state.epoch_loss_sum = self.meters.epoch_loss_sum()
        self._copy_clocks_to_state()
        run, learner = self.run, self.learner
        if run.ctx.is_main:
            save_train_state(
                run.checkpoint_dir,
                learner.model,
                {
                    "step": self.state.step,
                    "fingerprint": self.fingerprint,
                    "loop": self.state.to_dict(),
                    "optimizer": learner.optimizer.state_dict(),
                    "scheduler": learner.scheduler.state_dict(),
                },
            )
        dist_utils.barrier(run.ctx)

    def _copy_clocks_to_state(self) -> None:
        self.state.wall_seconds = self.wall.read()
        self.state.train_seconds = self.stepping.read()

    def finish(self) -> TrainResult:
        """Check the replicas agree, then write history, pictures and the final weights."""
        run, state, model = self.run, self.state, self.learner.model
        self.progress.close()
        dist_utils.assert_in_sync(self.network, run.ctx, run.device)
        self.wall.stop()
        self._copy_clocks_to_state()
        metrics = _final_metrics(state)
        final_path = run.out_dir / CHECKPOINT_FILE
        if run.ctx.is_main:
            _write_history(run.out_dir, state, run.config, plots=True)
            _write_samples(run, model)
            save_checkpoint(
                final_path,
                model,
                metadata={
                    "train_config": run.config.model_dump(mode="json"),
                    "metrics": _checkpoint_metrics(metrics),
                },
            )
        dist_utils.barrier(run.ctx)
        logger.info(
            "trained %d steps in %.1f s (this session %.1f s)",
            state.step,
            state.wall_seconds,
            time.perf_counter() - run.started,
        )
        return TrainResult(
            metrics=metrics, history=state.history, checkpoint=final_path, model=model
        )


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


def _validate(run: Run, model: nn.Module) -> dict[str, float]:
    """val/<set>/<metric> on rank 0 (the others wait); the same keys for teacher and student.

    Always in fp32, whatever the training precision, so every model's numbers are comparable
    with each other and with `depth-distill evaluate`.
    """
    config = run.config
    values: dict[str, float] = {}
    if run.ctx.is_main:
        values = evaluate_sets(
            model, run.val_sets, config.batch_size, run.device, config.val_max_images, config.seed
        )
    dist_utils.barrier(run.ctx)
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


# Timings differ between runs of identical weights: they go to the metrics, not into the file.
_TIMING_METRICS = ("train/wall_seconds", "train/images_per_second")


def _checkpoint_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The final metrics stored in the checkpoint: finite, and no timings, so identical weights
    give identical bytes and DVC does not see a new teacher where the weights are the same."""
    return {k: v for k, v in metrics.items() if math.isfinite(v) and k not in _TIMING_METRICS}


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
    write_json(out_dir / HISTORY_FILE, payload, indent=1)
    if plots:
        plot_loss_curve(state.steps_log, out_dir / "loss_curve.png")
        plot_epoch_metrics(state.history, out_dir / "val_metrics.png")


def _write_samples(run: Run, model: nn.Module) -> None:
    """image | prediction | ground truth for the first images of the first validation set."""
    n_samples = run.config.n_samples
    if n_samples == 0 or not run.val_sets:
        return
    first = next(iter(run.val_sets.values()))
    samples_picture(model, first, n_samples, run.out_dir / "samples.png", run.device)
