"""fp32 or bf16 autocast for training: what "auto" means on each device, and why.

On GPUs with bf16 support, bf16 autocast is the standard choice (tensor cores). On CPUs, bf16
only pays where the CPU multiplies bf16 natively (AMX, or AVX512-BF16 as on this machine);
elsewhere it is emulated and slower. Measured with benchmarks/bench_train.py on this 2-core
AVX512-BF16 CPU (torch 2.14, batch 16 of 96x128 images, one full training step: perturbations
for students, loss, backward, clipping, AdamW; best step of 4, fp32 and bf16 interleaved),
images/s fp32 -> bf16:

                                   2 threads              1 thread
    teacher  convnext_pico (64)    27.1 -> 43.7  1.61x    16.4 -> 26.3  1.60x
    student  vit_tiny      (32)    45.1 -> 63.8  1.42x    27.7 -> 39.5  1.43x
    student  convnext_atto (32)    69.5 -> 89.2  1.28x    38.0 -> 49.2  1.30x
    student  resnet18      (32)    40.3 -> 62.2  1.54x    21.1 -> 35.0  1.66x

On one H100 (torch 2.11, CUDA 13), batch 32 of 320x320 images, the GPU profile's models of the time:

    teacher  vit_base  (128)      130.8 -> 388.6  2.97x
    student  vit_small (64)       266.8 -> 461.1  1.73x
    student  convnext_tiny (64)   205.6 -> 402.2  1.96x
    student  resnet50  (64)       336.0 -> 384.3  1.14x

(The CPU-sized default models at batch 16 are launch-bound on an H100: 360-430 images/s, with
bf16 0.83-0.92x of fp32; the GPU profile is what runs there.) bf16 was faster for every
configuration each device is sized for, so "auto" is bf16 on CUDA with bf16 and on CPUs with
native bf16, fp32 elsewhere. The rule is static (not a timing taken at start-up) so the same
params give the same run on the same machine; a resumed run keeps the precision it started with.
"""

from __future__ import annotations

from pathlib import Path

import torch

from depth_core.device import supports_bf16


def cpu_has_native_bf16() -> bool:
    """AMX or AVX512-BF16: without either, bf16 on CPU is emulated and never faster."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in (" amx_bf16", " avx512_bf16"))


def resolve_precision(precision: str, device: torch.device) -> str:
    """ "fp32" or "bf16" for a configured precision of "auto", "fp32" or "bf16"."""
    if precision == "fp32":
        return "fp32"
    if precision == "bf16":
        if not supports_bf16(device):
            raise ValueError(f"precision 'bf16' is not supported on {device}")
        return "bf16"
    if precision != "auto":
        raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {precision!r}")
    if device.type == "cuda":
        return "bf16" if supports_bf16(device) else "fp32"
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"
