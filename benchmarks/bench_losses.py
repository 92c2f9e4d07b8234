"""Batched depth losses vs a straightforward per-image loop, measured in the same run.

Forward + backward of ``depth_core.losses.depth_loss`` (both alignment methods) on a CPU batch
with random masks of different valid counts, against a plain implementation that loops over the
images. Both must agree to 1e-5 relative before their times mean anything.

    python benchmarks/bench_losses.py [--batch 16] [--size 128] [--repeats 21] [--threads 1]

One intra-op thread by default: per-image tensors of a 128 x 128 image are too small for torch to
split across threads, so a single thread compares the two implementations rather than the
thread pool, and it keeps the figures stable on a shared, loaded machine (with several threads,
every parallel op waits for a thread the OS may have descheduled). ``--threads 0`` keeps torch's
default. Both implementations are timed alternately within each repeat, so background load
falls on both alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import torch

from depth_core.losses import MAD_EPS, depth_loss

RTOL = 1e-5
TARGET_SPEEDUP = 3.0


# ----------------------------------------------------------------------------------------------
# the per-image reference: one image at a time, boolean indexing, library median, 2x2 solve


def _loop_align(pred_b, target_b, mask_b, method):
    """Aligned (pred, target) maps of one image; assumes >= 2 valid pixels and a varying map."""
    p, t = pred_b[mask_b], target_b[mask_b]
    if method == "lstsq":
        # the 2x2 normal equations of min sum (s * p + t - target)^2, as in MiDaS
        a00, a01, a11 = (p * p).sum(), p.sum(), float(p.numel())
        b0, b1 = (p * t).sum(), t.sum()
        det = a00 * a11 - a01 * a01
        scale = (a11 * b0 - a01 * b1) / det
        shift = (a00 * b1 - a01 * b0) / det
        return scale * pred_b + shift, target_b
    maps = []
    for full, valid in ((pred_b, p), (target_b, t)):
        median = torch.quantile(valid, 0.5)
        mad = (valid - median).abs().mean().clamp(min=MAD_EPS)
        maps.append(torch.where(mask_b, (full - median) / mad, 0.0))
    return maps[0], maps[1]


def loop_depth_loss(pred, target, mask, method="lstsq", alpha=2.0, scales=4):
    """depth_loss with batch reduction and no trim, computed image by image."""
    ssi_sum, count = pred.new_zeros(()), 0
    grad_num = [pred.new_zeros(()) for _ in range(scales)]
    grad_den = [0] * scales
    for b in range(pred.shape[0]):
        mask_b = mask[b]
        aligned_p, aligned_t = _loop_align(pred[b], target[b], mask_b, method)
        residual = (aligned_p - aligned_t)[mask_b]
        if method == "lstsq":
            ssi_sum = ssi_sum + 0.5 * (residual**2).sum()
        else:
            ssi_sum = ssi_sum + residual.abs().sum()
        count += int(mask_b.sum())
        full_residual = (aligned_p - aligned_t) * mask_b
        for k in range(scales):
            step = 2**k
            r = full_residual[::step, ::step]
            m = mask_b[::step, ::step].float()
            gx = (r[:, 1:] - r[:, :-1]).abs() * m[:, 1:] * m[:, :-1]
            gy = (r[1:, :] - r[:-1, :]).abs() * m[1:, :] * m[:-1, :]
            grad_num[k] = grad_num[k] + gx.sum() + gy.sum()
            grad_den[k] += int(m.sum())
    gradient = sum(num / den for num, den in zip(grad_num, grad_den))
    return ssi_sum / count + alpha * gradient


# ----------------------------------------------------------------------------------------------
# measurement


def make_batch(batch: int, size: int, seed: int = 0):
    """Random disparities and masks whose valid fraction differs per image (30% to 95%)."""
    gen = torch.Generator().manual_seed(seed)
    target = torch.rand(batch, size, size, generator=gen) + 0.1
    pred = 2.0 * target + 0.3 * torch.rand(batch, size, size, generator=gen)
    fraction = 0.3 + 0.65 * torch.rand(batch, 1, 1, generator=gen)
    mask = torch.rand(batch, size, size, generator=gen) < fraction
    return pred, target, mask


def _forward_backward(fn: Callable, pred, target, mask, method):
    leaf = pred.detach().clone().requires_grad_(True)
    loss = fn(leaf, target, mask, method=method)
    loss.backward()
    return loss.detach(), leaf.grad


def _interleaved_median_ms(fns: Sequence[Callable], warmup: int, repeats: int) -> list[float]:
    """Median wall time (ms) of each function, timed in alternating order within every repeat
    so that background load on a shared machine hits all of them alike."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for repeat in range(repeats):
        order = range(len(fns)) if repeat % 2 == 0 else reversed(range(len(fns)))
        for i in order:
            start = time.perf_counter()
            fns[i]()
            times[i].append(time.perf_counter() - start)
    return [1e3 * statistics.median(t) for t in times]


def _relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-30))


def run_benchmark(batch=16, size=128, warmup=3, repeats=21, seed=0) -> list[dict]:
    """One row per method: times (ms, median over repeats), speed-up and agreement."""
    pred, target, mask = make_batch(batch, size, seed)
    rows = []
    for method in ("lstsq", "median"):
        loss_b, grad_b = _forward_backward(depth_loss, pred, target, mask, method)
        loss_l, grad_l = _forward_backward(loop_depth_loss, pred, target, mask, method)
        batched_ms, loop_ms = _interleaved_median_ms(
            [
                lambda m=method: _forward_backward(depth_loss, pred, target, mask, m),
                lambda m=method: _forward_backward(loop_depth_loss, pred, target, mask, m),
            ],
            warmup,
            repeats,
        )
        rows.append(
            {
                "method": method,
                "loop_ms": loop_ms,
                "batched_ms": batched_ms,
                "speedup": loop_ms / batched_ms,
                "loss_rel_diff": _relative_difference(loss_b, loss_l),
                "grad_rel_diff": _relative_difference(grad_b, grad_l),
            }
        )
    return rows


def format_table(rows: list[dict]) -> str:
    header = (
        f"{'method':<8} {'loop ms':>9} {'batched ms':>11} {'speed-up':>9} "
        f"{'loss rel':>10} {'grad rel':>10}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['method']:<8} {r['loop_ms']:>9.2f} {r['batched_ms']:>11.2f} {r['speedup']:>8.1f}x "
            f"{r['loss_rel_diff']:>10.1e} {r['grad_rel_diff']:>10.1e}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads; 0 keeps torch's default"
    )
    args = parser.parse_args(argv)
    if args.threads < 0:
        parser.error(f"--threads must be >= 0, got {args.threads}")
    previous_threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        threads = torch.get_num_threads()
        rows = run_benchmark(args.batch, args.size, args.warmup, args.repeats, args.seed)
    finally:
        torch.set_num_threads(previous_threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"depth_loss forward+backward, batch {args.batch} x {args.size} x {args.size}, CPU, "
        f"{threads} threads, torch {torch.__version__}, median of {args.repeats} "
        f"(load average {load:.1f} on {os.cpu_count()} cores)"
    )
    print(format_table(rows))
    agree = all(r["loss_rel_diff"] <= RTOL and r["grad_rel_diff"] <= RTOL for r in rows)
    fast = all(r["speedup"] >= TARGET_SPEEDUP for r in rows)
    print(f"results agree to {RTOL:g} relative: {'yes' if agree else 'NO'}")
    print(f"batched >= {TARGET_SPEEDUP:g}x faster for every method: {'yes' if fast else 'no'}")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
