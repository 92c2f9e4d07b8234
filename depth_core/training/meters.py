"""What the training loop measures without waiting for the device: train/* sums and clocks.

Reading a GPU scalar on the host (`float(loss)`, `.item()`, `.tolist()`) waits for all queued
work, so a loop that reads its numbers every step runs the host and the device in lock-step.
`TrainMeters` keeps the per-step scalars on the device and sums them there; the host reads
them, and the ranks average them in one all-reduce, only when the loop logs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from depth_core import distributed as dist_utils

# The scalars every training step reports, in the order of `StepOutcome.values`.
STEP_KEYS = ("train/loss", "train/ssi", "train/gradient", "train/grad_norm")


class TrainMeters:
    """Sums of the applied steps' scalars since the last log call, and of the epoch's losses.

    Sums are float64 on the device. The epoch sum starts from the value a checkpoint saved
    (every rank from the same, rank-averaged value), so a resumed epoch's mean loss is the
    uninterrupted one's.
    """

    def __init__(self, device: torch.device, ctx: dist_utils.DistContext, epoch_loss: float = 0.0):
        self.device = device
        self.ctx = ctx
        self.window = torch.zeros(len(STEP_KEYS), dtype=torch.float64, device=device)
        self.window_steps = 0
        self.lr = math.nan
        self.epoch_loss = torch.tensor(epoch_loss, dtype=torch.float64, device=device)

    def add(self, values: torch.Tensor, lr: float) -> None:
        """Count one applied step: its `STEP_KEYS` values (float64, on the device) and its lr."""
        self.window += values
        self.epoch_loss += values[0]
        self.window_steps += 1
        self.lr = lr

    def pop_window(self) -> dict[str, float] | None:
        """Means over the window's steps and the ranks, plus train/lr of its last step; None
        when no step was applied since the last call. The next window starts empty."""
        if self.window_steps == 0:
            return None
        local = dict(zip(STEP_KEYS, (self.window / self.window_steps).tolist()))
        means = dist_utils.mean_across_ranks(local, self.ctx, self.device)
        self.window.zero_()
        self.window_steps = 0
        return {**{key: means[key] for key in STEP_KEYS}, "train/lr": self.lr}

    def epoch_loss_sum(self) -> float:
        """The epoch's summed train/loss so far, each step's loss averaged over the ranks."""
        total = {"train/loss": float(self.epoch_loss)}
        return dist_utils.mean_across_ranks(total, self.ctx, self.device)["train/loss"]

    def new_epoch(self) -> None:
        self.epoch_loss.zero_()


class Stopwatch:
    """Seconds summed over the intervals it ran, on top of a saved total (a resumed run's)."""

    def __init__(self, total: float = 0.0) -> None:
        self._total = total
        self._since: float | None = None

    def start(self) -> None:
        self._since = time.perf_counter()

    def stop(self) -> None:
        self._total = self.read()
        self._since = None

    def read(self) -> float:
        running = time.perf_counter() - self._since if self._since is not None else 0.0
        return self._total + running

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Leave out the block's time (e.g. writing a checkpoint between training steps)."""
        running = self._since is not None
        if running:
            self.stop()
        try:
            yield
        finally:
            if running:
                self.start()
