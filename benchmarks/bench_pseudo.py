"""Pseudo-labelling throughput: batched + bf16/auto + inference_mode vs naive per-image fp32 loops.

All paths label the same images with the same teacher in the same run. The fast path is the
pipeline's own (depth_core.inference.prepare_for_inference + pseudo_label.label_images, batched
under torch.inference_mode, precision picked by `amp: auto`). The naive loops run the fp32 model on one
image at a time, once as a first script would (autograd recording) and once under
torch.no_grad. Each path runs `--repeats` times, interleaved, and its best time counts: other
processes on a shared machine slow every path alike. Target: >= 4x over the naive loop.

    python benchmarks/bench_pseudo.py [--params params.yaml] [--images 64] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from depth_core.atomic_io import write_json
from depth_core.device import device_name, pick_device
from depth_core.inference import prepare_for_inference, resolve_amp
from depth_core.models import ModelConfig, build_model
from depth_core.pseudo_label import label_images

FALLBACK_TEACHER = {"backbone": "vit_small_patch16_224", "features": 64, "img_size": 96}


def teacher_config(
    params_path: Path | None, backbone: str | None, img_size: int | None
) -> tuple[ModelConfig, tuple[int, int] | None]:
    """The params.yaml teacher (or a fallback), optionally with another backbone / size, and
    the size of the unlabeled images it labels in the pipeline (None without params)."""
    if params_path is not None and params_path.exists():
        from orchestration.params.schema import load_params

        params = load_params(params_path)
        config = params.teacher.model
        render = params.data.unlabeled.render
        image_size = (render.height, render.width)
    else:
        config, image_size = ModelConfig(**FALLBACK_TEACHER), None
    update = {k: v for k, v in (("backbone", backbone), ("img_size", img_size)) if v is not None}
    if update:
        config = ModelConfig(**{**config.model_dump(), **update})
    return config, image_size


def naive_loop(
    model: torch.nn.Module, images: np.ndarray, no_grad: bool, device: torch.device
) -> np.ndarray:
    """One image at a time in fp32."""
    out = []
    with torch.set_grad_enabled(not no_grad):
        for image in images:
            x = torch.from_numpy(image).permute(2, 0, 1)[None].to(device).float() / 255.0
            out.append(model(x)[0].detach().cpu().numpy())
    return np.stack(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--backbone", default=None, help="override the teacher backbone")
    parser.add_argument("--img-size", type=int, default=None, help="override the teacher img_size")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument(
        "--height",
        type=int,
        default=None,
        help="default: the pipeline's unlabeled image size from params (else the model's "
        "img_size); the naive loop runs at the image size, so keep the longer side = img_size "
        "for a fair comparison",
    )
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda:N")
    parser.add_argument("--json", type=Path, default=None)
    return parser.parse_args(argv)


def teacher_and_images(
    args: argparse.Namespace, device: torch.device
) -> tuple[ModelConfig, torch.nn.Module, np.ndarray]:
    """The seeded teacher in eval mode and random uint8 images of the pipeline's size."""
    config, pipeline_size = teacher_config(args.params, args.backbone, args.img_size)
    torch.manual_seed(0)
    model = build_model(config).eval().to(device)
    if pipeline_size is None or max(pipeline_size) != config.img_size:
        pipeline_size = (config.img_size, config.img_size)
    height, width = args.height or pipeline_size[0], args.width or pipeline_size[1]
    images = np.random.default_rng(0).integers(
        0, 256, (args.images, height, width, 3), dtype=np.uint8
    )
    return config, model, images


def labelling_paths(
    model: torch.nn.Module, images: np.ndarray, batch_size: int, device: torch.device
) -> dict[str, Callable[[], np.ndarray]]:
    """The four ways to label `images`, each a call that returns the disparity maps."""
    fast = {amp: prepare_for_inference(copy.deepcopy(model), amp) for amp in ("fp32", "bf16")}
    return {
        "naive per-image fp32": lambda: naive_loop(model, images, False, device),
        "naive per-image fp32 no_grad": lambda: naive_loop(model, images, True, device),
        "batched fp32 inference_mode": lambda: label_images(
            fast["fp32"], images, batch_size, device, "fp32", False
        ),
        "batched bf16 inference_mode": lambda: label_images(
            fast["bf16"], images, batch_size, device, "bf16", False
        ),
    }


def best_times(
    runs: dict[str, Callable[[], np.ndarray]], repeats: int
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Best seconds per path over `repeats` interleaved rounds after one warm-up (allocator,
    oneDNN primitive caches), and each path's last output."""
    for fn in runs.values():
        fn()
    seconds = {name: float("inf") for name in runs}
    outputs = {}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            outputs[name] = fn()
            seconds[name] = min(seconds[name], time.perf_counter() - start)
    return seconds, outputs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = pick_device(args.device)
    config, model, images = teacher_and_images(args, device)
    height, width = images.shape[1:3]
    print(
        f"teacher {config.backbone} features {config.features} (img_size {config.img_size}), "
        f"{args.images} images {height}x{width} on {device_name(device)}, "
        f"{torch.get_num_threads()} threads, "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )

    auto = resolve_amp("auto", device)
    seconds, outputs = best_times(
        labelling_paths(model, images, args.batch_size, device), args.repeats
    )
    for name in seconds:
        print(f"{name:<30} {args.images / seconds[name]:8.1f} images/s", flush=True)

    fast_name = f"batched {auto} inference_mode"
    ratio = seconds["naive per-image fp32"] / seconds[fast_name]
    ratio_no_grad = seconds["naive per-image fp32 no_grad"] / seconds[fast_name]
    reference = outputs["naive per-image fp32 no_grad"]
    deviation = {
        name: float(np.abs(out - reference).max() / np.abs(reference).max())
        for name, out in outputs.items()
    }
    print(
        f"amp auto picks {auto}; pipeline path vs naive loop: {ratio:.2f}x (target >= 4x), "
        f"vs naive no_grad loop: {ratio_no_grad:.2f}x; bf16 max relative deviation "
        f"{deviation['batched bf16 inference_mode']:.4f}",
        flush=True,
    )
    if args.json:
        write_json(
            args.json,
            {
                "images_per_second": {k: args.images / v for k, v in seconds.items()},
                "auto": auto,
                "ratio": ratio,
                "ratio_vs_no_grad": ratio_no_grad,
                "deviation": deviation,
            },
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
