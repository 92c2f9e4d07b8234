"""CPU inference of each student: PyTorch eager fp32 vs its faster settings vs onnxruntime.

For every student checkpoint (params.yaml's students, or --checkpoint files), at each size
(256 x 256 and 518 x 518 by default): single-image latency (batch 1, median ms) and batch
throughput (--batch images per call, img/s) of

- eager fp32 (the reference), bf16 autocast, channels_last, bf16 + channels_last,
  torch.compile (fp32): the PyTorch CPU settings; the fastest one is "best PyTorch";
- onnxruntime on the model exported by depth_core.export (parity-checked at export).

All are measured in the same run, interleaved per size, and printed as ratios to eager fp32.
Goal: the fastest path at least 1.5x eager fp32 for every student.

    depth-distill bench inference [--params params.yaml] [--checkpoint CKPT ...]
        [--sizes 256 518] [--batch 8] [--iterations 5] [--threads N] [--modes eager bf16 ...]
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from depth_core.atomic_io import write_json
from depth_core.device import autocast, supports_bf16
from depth_core.models import build_model, load_checkpoint
from depth_core.models.checkpoint import CHECKPOINT_FILE

TORCH_MODES = ("eager", "bf16", "channels_last", "bf16_channels_last", "compile")
MODES = (*TORCH_MODES, "onnx")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument(
        "--checkpoint", action="append", default=[], help="a student checkpoint (repeatable)"
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 518])
    parser.add_argument("--batch", type=int, default=8, help="images per call for throughput")
    parser.add_argument("--iterations", type=int, default=5, help="timed calls per measurement")
    parser.add_argument("--threads", type=int, default=None, help="torch and onnxruntime threads")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--json", type=Path, default=None)
    return parser.parse_args(argv)


def students(args: argparse.Namespace) -> dict[str, torch.nn.Module]:
    """Name -> model in eval mode: the given checkpoints, else params.yaml's students
    (trained checkpoints where they exist, random weights of the same architecture if not)."""
    if args.checkpoint:
        return {Path(c).parent.name or c: load_checkpoint(c)[0] for c in args.checkpoint}
    from orchestration.params.schema import load_params

    params = load_params(args.params)
    root = args.params.resolve().parent
    models = {}
    for name, cfg in params.students.items():
        path = root / "models" / "students" / name / CHECKPOINT_FILE
        if path.exists():
            models[name] = load_checkpoint(path)[0]
        else:
            print(f"{name}: no checkpoint at {path}, timing random weights", flush=True)
            models[name] = build_model(cfg.model, load_pretrained=False).eval()
    return models


def torch_call(model: torch.nn.Module, mode: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """One PyTorch CPU setting as a function of the input batch."""
    amp = "bf16" if mode.startswith("bf16") else "fp32"
    channels_last = mode.endswith("channels_last")
    net = model
    if channels_last:
        net = copy.deepcopy(model).to(memory_format=torch.channels_last)
    if mode == "compile":
        # Static shapes: each size compiles its own graph (dynamic-shape recompiles of these
        # models fail inside inductor in torch 2.14: TensorReferenceAnalysis.python_mod).
        net = torch.compile(model, dynamic=False)

    def call(x: torch.Tensor) -> torch.Tensor:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), autocast("cpu", amp):
            return net(x)

    return call


def onnx_call(model: torch.nn.Module, folder: Path, name: str):
    """The exported model through onnxruntime (exported once per student)."""
    from depth_core.export import ExportConfig, export_model, load_onnx_model

    config = ExportConfig(parity_sizes=[(96, 128), (75, 131)], parity_images_per_size=1)
    report = export_model(model, folder / f"{name}.onnx", config)
    session_model, _ = load_onnx_model(report.path, threads=torch.get_num_threads())
    return lambda x: session_model.run(x.numpy())


def median_seconds(call: Callable, x: torch.Tensor, iterations: int) -> float:
    call(x)  # warm-up: oneDNN primitives, onnxruntime arenas, torch.compile's compilation
    times = []
    for _ in range(max(1, iterations)):
        start = time.perf_counter()
        call(x)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure(calls: dict[str, Callable], size: int, batch: int, iterations: int) -> dict:
    """mode -> {latency_ms (batch 1), images_per_s (batch ``batch``)} at ``size`` x ``size``."""
    generator = torch.Generator().manual_seed(0)
    one = torch.rand(1, 3, size, size, generator=generator)
    many = torch.rand(batch, 3, size, size, generator=generator)
    results = {}
    for mode, call in calls.items():
        latency = median_seconds(call, one, iterations)
        throughput = batch / median_seconds(call, many, iterations)
        results[mode] = {"latency_ms": latency * 1000.0, "images_per_s": throughput}
    return results


def report(name: str, size: int, results: dict) -> dict:
    """Print one size's table with ratios to eager fp32; return the best settings."""
    base = results.get("eager")
    print(f"{name} {size}x{size}:", flush=True)
    for mode, r in results.items():
        ratios = ""
        if base:
            ratios = (
                f"  latency {base['latency_ms'] / r['latency_ms']:.2f}x"
                f"  throughput {r['images_per_s'] / base['images_per_s']:.2f}x"
            )
        print(f"  {mode:<20} {r['latency_ms']:9.1f} ms/img  {r['images_per_s']:8.1f} img/s{ratios}")
    torch_modes = [m for m in results if m != "onnx"]
    best = {
        "best_pytorch_latency": min(torch_modes, key=lambda m: results[m]["latency_ms"])
        if torch_modes
        else None,
        "fastest_latency": min(results, key=lambda m: results[m]["latency_ms"]),
        "fastest_throughput": max(results, key=lambda m: results[m]["images_per_s"]),
    }
    if base:
        fastest = results[best["fastest_latency"]]
        best["fastest_latency_ratio"] = base["latency_ms"] / fastest["latency_ms"]
    print(f"  -> {best}", flush=True)
    return best


def available_modes(modes: list[str]) -> list[str]:
    if not supports_bf16(torch.device("cpu")):
        skipped = [m for m in modes if m.startswith("bf16")]
        if skipped:
            print(f"no native bf16 on this CPU: skipping {skipped}", flush=True)
        modes = [m for m in modes if not m.startswith("bf16")]
    return modes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    modes = available_modes(args.modes)
    print(
        f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}, "
        f"modes {modes}, sizes {args.sizes}, batch {args.batch}",
        flush=True,
    )
    table = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, model in students(args).items():
            torch._dynamo.reset()  # the students share forward code: keep under the recompile limit
            calls = {m: torch_call(model, m) for m in modes if m != "onnx"}
            if "onnx" in modes:
                calls["onnx"] = onnx_call(model, Path(folder), name)
            for size in args.sizes:
                results = measure(calls, size, args.batch, args.iterations)
                table[f"{name}@{size}"] = {"results": results, **report(name, size, results)}
    if args.json:
        write_json(args.json, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
