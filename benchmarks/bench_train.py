"""Training throughput of the teacher and student configurations: fp32 vs bf16 autocast, and
contiguous (NCHW) vs channels_last memory format.

Prints, per configuration, precision and memory format, images/s of the real training step
(depth_core.training.trainer.train_step: perturbations for students, loss, backward, clip,
AdamW) and the achieved FLOP/s as a fraction of this machine's matmul peak, the peak measured
in the same run for the same dtype. FLOPs per step: 3x the forward FLOPs counted by
torch.utils.flop_counter (its backward count is wrong for grouped convolutions, see
StepRunner.flops). The four variants' steps alternate and the best step time of each counts, and
the peak is the best of measurements before, between and after the configurations: on a shared
machine other processes slow some steps, never speed them up. The faster precision per
configuration is what `precision: auto` picks on this device (depth_core.training.precision);
the channels_last / contiguous ratio is the evidence for a profile's `channels_last`.

    python benchmarks/bench_train.py [--params params.yaml] [--steps 3] [--batch-size 16]
        [--precisions fp32,bf16]   (bf16 on a CPU without native bf16 is emulated: very slow)
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from depth_core.atomic_io import write_json
from depth_core.device import device_name, pick_device
from depth_core.models import ModelConfig, build_model
from depth_core.training.config import TrainConfig
from depth_core.training.optim import build_optimizer
from depth_core.training.trainer import train_step

PRECISIONS = ("fp32", "bf16")
CL = "channels_last"
FORMATS = ("contiguous", CL)

FALLBACK = {
    "teacher": {"backbone": "vit_small_patch16_224", "features": 64, "img_size": 96},
    "student_vit": {"backbone": "vit_tiny_patch16_224", "features": 32, "img_size": 96},
    "student_convnext": {"backbone": "convnext_atto", "features": 32, "img_size": 96},
    "student_resnet": {"backbone": "resnet18", "features": 32, "img_size": 96},
}


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock timings cover the work itself."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(dtype: torch.dtype, device: torch.device, seconds: float = 1.0) -> float:
    """Best FLOP/s of square matmuls in `dtype` over about `seconds` (GPUs need larger ones)."""
    best = 0.0
    sizes = (4096, 8192) if device.type == "cuda" else (1024, 2048)
    for size in sizes:
        a = torch.randn(size, size, dtype=dtype, device=device)
        b = torch.randn(size, size, dtype=dtype, device=device)
        torch.mm(a, b)
        synchronize(device)
        deadline = time.perf_counter() + seconds / 2
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            torch.mm(a, b)
            synchronize(device)
            best = max(best, 2.0 * size**3 / (time.perf_counter() - start))
    return best


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def update_peaks(
    peaks: dict[str, float], device: torch.device, precisions: tuple[str, ...] = PRECISIONS
) -> dict[str, float]:
    """Best peak so far: measured again between configurations, as load on a shared
    machine comes and goes (a peak measured under load would inflate every fraction)."""
    return {p: max(peaks.get(p, 0.0), matmul_peak(DTYPES[p], device)) for p in precisions}


def configurations(params_path: Path | None) -> dict[str, tuple[TrainConfig, bool]]:
    """(TrainConfig, is_student) for the teacher and every student of params.yaml, if readable."""
    if params_path is not None and params_path.exists():
        from orchestration.params.schema import load_params

        params = load_params(params_path)
        configs = {"teacher": (params.teacher, False)}
        configs.update({f"student_{name}": (cfg, True) for name, cfg in params.students.items()})
        return configs
    return {
        name: (TrainConfig(model=ModelConfig(**model)), name != "teacher")
        for name, model in FALLBACK.items()
    }


def synthetic_batch(
    config: TrainConfig,
    batch_size: int,
    student: bool,
    generator: torch.Generator,
    size: tuple[int, int],
) -> dict:
    pseudo = torch.zeros(batch_size, dtype=torch.bool)
    if student:  # the configured labeled : pseudo ratio
        a, b = config.mix.labeled, config.mix.pseudo
        pseudo = torch.tensor([(i % (a + b)) >= a for i in range(batch_size)])
    return {
        "image": torch.rand(batch_size, 3, *size, generator=generator),
        "disparity": torch.rand(batch_size, *size, generator=generator) + 0.1,
        "mask": torch.ones(batch_size, *size, dtype=torch.bool),
        "pseudo": pseudo,
    }


class StepRunner:
    """One model + optimizer training on synthetic batches in a fixed precision."""

    def __init__(
        self,
        config: TrainConfig,
        student: bool,
        batch_size: int,
        precision: str,
        size: tuple[int, int],
        device: torch.device,
        channels_last: bool,
    ) -> None:
        torch.manual_seed(0)
        config = config.model_copy(update={"channels_last": channels_last})
        self.device = device
        self.model = build_model(config.model).to(device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(self.model, config.optim)
        self.generator = torch.Generator().manual_seed(0)
        self.args = (config, batch_size, student, size, precision)

    def step(self) -> float:
        config, batch_size, student, size, precision = self.args
        batch = synthetic_batch(config, batch_size, student, self.generator, size)
        synchronize(self.device)
        start = time.perf_counter()
        train_step(
            self.model,
            self.optimizer,
            batch,
            config,
            self.device,
            precision,
            self.generator,
        )
        synchronize(self.device)
        return time.perf_counter() - start

    def flops(self) -> float:
        """FLOPs of one training step: 3x the forward pass's (backward = 2x forward).

        The forward is counted by torch.utils.flop_counter; its backward count is not used
        because it overcounts grouped convolutions by the group count (a depthwise 7x7 conv's
        backward comes out 65x its forward instead of 2x), which would inflate ConvNeXt.
        """
        config, batch_size, student, size, _ = self.args
        batch = synthetic_batch(config, batch_size, student, torch.Generator().manual_seed(1), size)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            self.model(batch["image"].to(self.device))
        return 3.0 * float(counter.get_total_flops())


def measure(
    config: TrainConfig,
    student: bool,
    batch_size: int,
    steps: int,
    size: tuple[int, int],
    device: torch.device,
    precisions: tuple[str, ...] = PRECISIONS,
) -> dict[str, dict[str, float]]:
    """Best step time per variant ("<precision>/<format>"), the variants' steps interleaved so
    load changes hit all of them."""
    runners = {
        f"{p}/{fmt}": StepRunner(config, student, batch_size, p, size, device, fmt == CL)
        for p in precisions
        for fmt in FORMATS
    }
    flops = runners[f"{precisions[0]}/{FORMATS[0]}"].flops()
    for runner in runners.values():  # warm-up: allocator, oneDNN primitive caches
        runner.step()
    best = {v: float("inf") for v in runners}
    for _ in range(steps):
        for variant, runner in runners.items():
            best[variant] = min(best[variant], runner.step())
    return {
        v: {
            "images_per_second": batch_size / t,
            "flops_per_step": flops,
            "flops_per_second": flops / t,
        }
        for v, t in best.items()
    }


def ratios(rows: dict[str, dict[str, float]]) -> dict[str, float | str]:
    """bf16 / fp32 per format (when both ran), channels_last / contiguous per precision, and
    the fastest variant."""
    speed = {v: row["images_per_second"] for v, row in rows.items()}
    precisions = sorted({v.split("/")[0] for v in rows}, key=PRECISIONS.index)
    out: dict[str, float | str] = {}
    if len(precisions) == 2:
        out.update(
            {f"bf16_speedup/{fmt}": speed[f"bf16/{fmt}"] / speed[f"fp32/{fmt}"] for fmt in FORMATS}
        )
    out.update(
        {
            f"channels_last_speedup/{p}": speed[f"{p}/{CL}"] / speed[f"{p}/{FORMATS[0]}"]
            for p in precisions
        }
    )
    out["fastest"] = max(speed, key=speed.get)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--height", type=int, default=None, help="default: each model's img_size")
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--only", default=None, help="comma-separated configuration names")
    parser.add_argument(
        "--precisions", default=",".join(PRECISIONS), help="comma-separated: fp32, bf16"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda:N")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    precisions = tuple(p for p in PRECISIONS if p in args.precisions.split(","))
    if not precisions or set(args.precisions.split(",")) - set(PRECISIONS):
        parser.error(f"--precisions: a comma-separated subset of {','.join(PRECISIONS)}")

    device = pick_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__} on {device_name(device)}, {torch.get_num_threads()} threads, "
        f"load average "
        f"{os.getloadavg()[0]:.1f}",
        flush=True,
    )
    peaks = update_peaks({}, device, precisions)
    results: dict[str, dict] = {"configs": {}}
    configs = configurations(args.params)
    if args.only:
        configs = {k: v for k, v in configs.items() if k in args.only.split(",")}
    header = (
        f"{'config':<20} {'backbone':<24} {'size':>7} {'variant':>18} {'img/s':>8} "
        f"{'GFLOP/step':>11} {'of peak':>8}"
    )
    measured = {}
    for name, (config, student) in configs.items():
        size = (args.height or config.model.img_size, args.width or config.model.img_size)
        measured[name] = (
            config,
            size,
            measure(config, student, args.batch_size, args.steps, size, device, precisions),
        )
        print(f"measured {name} ({len(measured)}/{len(configs)})", flush=True)
        peaks = update_peaks(peaks, device, precisions)
    results["peak_flops"] = peaks
    print(
        "matmul peak (best over the run): "
        + ", ".join(f"{p} {peaks[p] / 1e9:.0f} GFLOP/s" for p in precisions),
        flush=True,
    )
    print(header, flush=True)
    for name, (config, size, rows) in measured.items():
        for variant, row in rows.items():
            row["fraction_of_peak"] = row["flops_per_second"] / peaks[variant.split("/")[0]]
            print(
                f"{name:<20} {config.model.backbone:<24} {size[0]:>3}x{size[1]:<3} {variant:>18} "
                f"{row['images_per_second']:>8.1f} {row['flops_per_step'] / 1e9:>11.1f} "
                f"{row['fraction_of_peak']:>8.1%}",
                flush=True,
            )
        summary = ratios(rows)
        parts = [
            f"{key.replace('_speedup/', ' speed-up (')}) {value:.2f}x"
            for key, value in summary.items()
            if key != "fastest"
        ]
        print(f"{'':<20} " + "; ".join(parts) + f"; fastest {summary['fastest']}", flush=True)
        results["configs"][name] = {**rows, **summary}
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
