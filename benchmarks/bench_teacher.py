"""What a real teacher costs: pseudo-labelling images/s of Depth Anything V2 Small and Base.

Randomly initialised models of the released architectures (`DepthAnythingConfig`, as the
authors' .pth files load) wrapped with the authors' processing, labelling 480x640 images at
518x686 (the short side at 518) through `pseudo_label.label_images`: fp32 one image at a time,
fp32 batched, and bf16 batched where the device runs bf16 natively. Random weights cost what
trained ones cost.

    depth-distill bench teacher [--models small base] [--images 4] [--batch-size 4]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from depth_core.device import device_name, pick_device
from depth_core.inference import prepare_for_inference, resolve_amp
from depth_core.models.official_depth_anything import (
    BY_NAME,
    Variant,
    run_as_authors,
    transformers_config,
)
from depth_core.models.transformers_teacher import TransformersDepthModel
from depth_core.pseudo_label import label_images

MODELS = {"small": "vits", "base": "vitb"}


def build_teacher(encoder: str) -> TransformersDepthModel:
    from transformers import DepthAnythingForDepthEstimation

    variant = Variant(BY_NAME[encoder], 2, None)
    model = DepthAnythingForDepthEstimation(transformers_config(variant))
    return run_as_authors(model.eval(), variant, "random")


def images_per_second(model, images, batch_size, device, amp) -> float:
    label_images(model, images[:1], 1, device, amp, False)  # warm-up
    start = time.perf_counter()
    label_images(model, images, batch_size, device, amp, False)
    return len(images) / (time.perf_counter() - start)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="depth-distill bench teacher")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="auto")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    device = pick_device(args.device)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.images, 480, 640, 3), dtype=np.uint8)
    bf16 = resolve_amp("auto", device) == "bf16"
    print(f"device {device_name(device)}, {torch.get_num_threads()} threads, 480x640 -> 518x686")
    for name in args.models:
        model = build_teacher(MODELS[name]).to(device)
        rates = {
            "fp32 per image": images_per_second(model, images, 1, device, "fp32"),
            "fp32 batched": images_per_second(model, images, args.batch_size, device, "fp32"),
        }
        if bf16:
            fast = prepare_for_inference(build_teacher(MODELS[name]).to(device), "bf16")
            rates["bf16 batched"] = images_per_second(fast, images, args.batch_size, device, "bf16")
        for mode, rate in rates.items():
            print(f"DA V2 {name:5s} {mode:15s} {rate:7.3f} images/s", flush=True)
    return 0
