"""Pseudo-labelling throughput: batched + bf16 + inference_mode vs a naive per-image fp32 loop.

Both label the same images with the same teacher in the same run. The fast path is the one
the pipeline uses (depth_core.pseudo_label.label_images); the naive loop runs the model on
one image at a time in fp32 under torch.no_grad. A batched fp32 inference_mode row separates
the gain of batching from the gain of bf16. Target: ratio >= 4x.

    python benchmarks/bench_pseudo.py [--params params.yaml] [--images 64] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from depth_core.models import ModelConfig, build_model
from depth_core.pseudo_label import label_images

FALLBACK_TEACHER = {"backbone": "vit_small_patch16_224", "features": 64, "img_size": 96}


def teacher_config(params_path: Path | None) -> ModelConfig:
    if params_path is not None and params_path.exists():
        from orchestration.config import load_params

        return load_params(params_path).teacher.model
    return ModelConfig(**FALLBACK_TEACHER)


def naive_loop(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    """One image at a time, fp32, autograd merely paused: how a first script does it."""
    out = []
    with torch.no_grad():
        for image in images:
            x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
            out.append(model(x)[0].numpy())
    return np.stack(out)


def timed(fn) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    config = teacher_config(args.params)
    torch.manual_seed(0)
    model = build_model(config).eval()
    size = config.img_size
    images = np.random.default_rng(0).integers(0, 256, (args.images, size, size, 3), dtype=np.uint8)
    device = torch.device("cpu")
    print(f"teacher {config.backbone} features {config.features} at {size}px, {args.images} images, "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}", flush=True)

    label_images(model, images[:2], 2, device, "bf16", False)  # warm-up both paths
    naive_loop(model, images[:2])
    runs = {
        "naive per-image fp32": lambda: naive_loop(model, images),
        "batched fp32 inference_mode": lambda: label_images(model, images, args.batch_size, device, "fp32", False),
        "batched bf16 inference_mode": lambda: label_images(model, images, args.batch_size, device, "bf16", False),
    }
    seconds, outputs = {}, {}
    for name, fn in runs.items():
        seconds[name], outputs[name] = timed(fn)
        print(f"{name:<30} {args.images / seconds[name]:8.1f} images/s", flush=True)
    base = "naive per-image fp32"
    ratio = seconds[base] / seconds["batched bf16 inference_mode"]
    batching = seconds[base] / seconds["batched fp32 inference_mode"]
    reference = outputs[base]
    error = float(np.abs(outputs["batched bf16 inference_mode"] - reference).max() / np.abs(reference).max())
    print(f"speed-up batched+bf16+inference_mode vs naive: {ratio:.2f}x (target >= 4x); "
          f"batching alone {batching:.2f}x; bf16 max relative deviation {error:.3f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"images_per_second": {k: args.images / v for k, v in seconds.items()},
                                         "ratio": ratio, "batching_ratio": batching, "bf16_deviation": error},
                                        indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
