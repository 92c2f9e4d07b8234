"""Training throughput of the teacher and student configurations, fp32 vs bf16 autocast.

Prints, per configuration and precision, images/s of the real training step
(depth_core.training.trainer.train_step: perturbations for students, loss, backward, clip,
AdamW) and the achieved FLOP/s as a fraction of this machine's matmul peak, the peak measured
in the same run for the same dtype. FLOPs per step come from torch.utils.flop_counter
(forward + backward). The faster precision per configuration is what `precision: auto`
picks on this device (depth_core.training.precision).

    python benchmarks/bench_train.py [--params params.yaml] [--steps 3] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from depth_core.models import ModelConfig, build_model
from depth_core.training.config import TrainConfig
from depth_core.training.optim import build_optimizer
from depth_core.training.trainer import train_step

FALLBACK = {
    "teacher": {"backbone": "vit_small_patch16_224", "features": 64, "img_size": 96},
    "student_vit": {"backbone": "vit_tiny_patch16_224", "features": 32, "img_size": 96},
    "student_convnext": {"backbone": "convnext_atto", "features": 32, "img_size": 96},
    "student_resnet": {"backbone": "resnet18", "features": 32, "img_size": 96},
}


def matmul_peak(dtype: torch.dtype, size: int = 2048, seconds: float = 1.0) -> float:
    """Best FLOP/s of a square matmul in `dtype` over about `seconds`."""
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2.0 * size**3 / (time.perf_counter() - start))
    return best


def configurations(params_path: Path | None) -> dict[str, tuple[TrainConfig, bool]]:
    """(TrainConfig, is_student) for the teacher and every student of params.yaml, if readable."""
    if params_path is not None and params_path.exists():
        from orchestration.config import load_params

        params = load_params(params_path)
        configs = {"teacher": (params.teacher, False)}
        configs.update({f"student_{name}": (cfg, True) for name, cfg in params.students.items()})
        return configs
    return {name: (TrainConfig(model=ModelConfig(**model)), name != "teacher")
            for name, model in FALLBACK.items()}


def synthetic_batch(config: TrainConfig, batch_size: int, student: bool, generator: torch.Generator) -> dict:
    size = config.model.img_size
    pseudo = torch.zeros(batch_size, dtype=torch.bool)
    if student:  # the configured labeled : pseudo ratio
        a, b = config.mix.labeled, config.mix.pseudo
        pseudo = torch.tensor([(i % (a + b)) >= a for i in range(batch_size)])
    return {
        "image": torch.rand(batch_size, 3, size, size, generator=generator),
        "disparity": torch.rand(batch_size, size, size, generator=generator) + 0.1,
        "mask": torch.ones(batch_size, size, size, dtype=torch.bool),
        "pseudo": pseudo,
    }


def measure(config: TrainConfig, student: bool, batch_size: int, steps: int, precision: str) -> dict[str, float]:
    torch.manual_seed(0)
    model = build_model(config.model)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, config.optim)
    generator = torch.Generator().manual_seed(0)
    device = torch.device("cpu")

    def step() -> None:
        batch = synthetic_batch(config, batch_size, student, generator)
        train_step(model, optimizer, batch, config, device, precision, generator)

    step()  # warm-up
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - start) / steps
    return {"images_per_second": batch_size / seconds, "flops_per_step": float(flops),
            "flops_per_second": flops / seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--only", default=None, help="comma-separated configuration names")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(f"matmul peak: fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s",
          flush=True)
    results: dict[str, dict] = {"peak_flops": peaks, "configs": {}}
    configs = configurations(args.params)
    if args.only:
        configs = {k: v for k, v in configs.items() if k in args.only.split(",")}
    header = f"{'config':<20} {'backbone':<24} {'px':>4} {'prec':>5} {'img/s':>8} {'GFLOP/step':>11} {'of peak':>8}"
    print(header, flush=True)
    for name, (config, student) in configs.items():
        rows = {}
        for precision in ("fp32", "bf16"):
            row = measure(config, student, args.batch_size, args.steps, precision)
            row["fraction_of_peak"] = row["flops_per_second"] / peaks[precision]
            rows[precision] = row
            print(f"{name:<20} {config.model.backbone:<24} {config.model.img_size:>4} {precision:>5} "
                  f"{row['images_per_second']:>8.1f} {row['flops_per_step'] / 1e9:>11.1f} "
                  f"{row['fraction_of_peak']:>8.1%}", flush=True)
        speedup = rows["bf16"]["images_per_second"] / rows["fp32"]["images_per_second"]
        rows["bf16_speedup"] = speedup
        rows["auto_picks"] = "bf16" if speedup > 1.0 else "fp32"
        print(f"{'':<20} bf16 / fp32 = {speedup:.2f}x -> auto picks {rows['auto_picks']}", flush=True)
        results["configs"][name] = rows
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
