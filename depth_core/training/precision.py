"""Choosing fp32 or bf16 autocast for training by measurement, per device and model.

On GPUs bf16 autocast is always at least as fast (tensor cores). On CPUs it depends: with
native bf16 matmuls (AMX or AVX512-BF16) wide ViT blocks get faster, while small convolutional
decoders get slower because the casts and the less-tuned bf16 convolutions dominate. Measured
on this 2-core AVX512-BF16 CPU, one training step (forward + backward + AdamW), batch 16,
96 px, images/s fp32 -> bf16:

    vit_small_patch16 (features 64)   1.5 -> 2.7   (bf16 1.8x faster)
    vit_tiny_patch16  (features 32)   5.3 -> 3.1   (bf16 0.59x)
    convnext_atto     (features 32)   4.5 -> 3.4   (bf16 0.75x)
    resnet18          (features 32)   7.1 -> 3.9   (bf16 0.55x)

(benchmarks/bench_train.py re-measures this for the configured teacher and students.)
So on CPU, "auto" times a few training steps of the actual model in both precisions and keeps
the faster; the choice is stored in the checkpoint so a resumed run keeps it.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from depth_core.device import supports_bf16
from depth_core.losses import depth_loss

Precision = str  # "fp32" | "bf16"


def cpu_has_native_bf16() -> bool:
    """AMX or AVX512-BF16: without either, bf16 on CPU is emulated and never faster."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in (" amx_bf16", " avx512_bf16"))


def _time_steps(step: Callable[[], None], repeats: int) -> float:
    step()  # warm-up: allocator, oneDNN primitive caches
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats


def measure_step_seconds(
    model: nn.Module,
    batch_size: int,
    image_size: tuple[int, int],
    device: torch.device,
    repeats: int = 2,
) -> dict[str, float]:
    """Seconds per training step of a copy of `model` in fp32 and bf16 (same run, interleaved)."""
    probe = copy.deepcopy(model).to(device).train()
    optimizer = torch.optim.AdamW(probe.parameters(), lr=1e-6)
    image = torch.rand(batch_size, 3, *image_size, device=device)
    target = torch.rand(batch_size, *image_size, device=device) + 0.1
    mask = torch.ones_like(target, dtype=torch.bool)

    def step(dtype: torch.dtype | None) -> None:
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            pred = probe(image)
        loss = depth_loss(pred.float(), target, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    times = {"fp32": [], "bf16": []}
    for _ in range(2):  # interleave so a load change on a shared machine hits both
        times["fp32"].append(_time_steps(lambda: step(None), repeats))
        times["bf16"].append(_time_steps(lambda: step(torch.bfloat16), repeats))
    return {k: min(v) for k, v in times.items()}


def resolve_precision(
    precision: str,
    device: torch.device,
    model: nn.Module | None = None,
    batch_size: int = 8,
    image_size: tuple[int, int] = (64, 64),
) -> tuple[Precision, dict[str, float]]:
    """("fp32" | "bf16", measurements) for a configured precision of "auto", "fp32" or "bf16"."""
    if precision == "fp32":
        return "fp32", {}
    if precision == "bf16":
        if not supports_bf16(device):
            raise ValueError(f"precision 'bf16' is not supported on {device}")
        return "bf16", {}
    if precision != "auto":
        raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {precision!r}")
    if device.type == "cuda":
        return ("bf16" if supports_bf16(device) else "fp32"), {}
    if device.type != "cpu" or not cpu_has_native_bf16() or model is None:
        return "fp32", {}
    seconds = measure_step_seconds(model, batch_size, image_size, device)
    choice = "bf16" if seconds["bf16"] < seconds["fp32"] else "fp32"
    return choice, {f"step_seconds_{k}": v for k, v in seconds.items()}
