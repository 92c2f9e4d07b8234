"""Shared test fixtures data: the smallest real model, and running one CLI command module."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import ModuleType

from depth_core.models.weights import IMAGENET_MEAN, IMAGENET_STD

REPO = Path(__file__).resolve().parents[1]


def smoke_raw() -> dict:
    """The smoke profile merged onto the default, as a params mapping a test may edit."""
    from orchestration.params.profiles import profile_raw

    return profile_raw(REPO, "smoke")[0]


def smoke_params():
    """The validated smoke profile (what `depth-distill params --profile smoke` writes)."""
    from orchestration.params.profiles import profile_params

    return profile_params(REPO, "smoke")


def write_smoke_params(path) -> Path:
    from orchestration.params.profiles import write_params

    return write_params(REPO, "smoke", path)


# A 4-block ViT with a 16-wide DPT head at 32 px: a real model that builds in milliseconds.
TINY_VIT = {
    "backbone": "vit_tiny_patch16_224",
    "features": 16,
    "img_size": 32,
    "backbone_kwargs": {"depth": 4, "embed_dim": 48, "num_heads": 2},
}


def run_command(module: ModuleType, argv: list[str]) -> int:
    """Parse `argv` with only `module`'s subcommands registered and run it."""
    parser = argparse.ArgumentParser()
    module.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


# The transformer width every tiny Hugging Face model below shares (4 blocks of 32 channels).
TINY_TRANSFORMER = {
    "hidden_size": 32,
    "num_hidden_layers": 4,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}


def _spread_weights(model, gain: float = 1.3) -> None:
    """Randomly initialised Hugging Face heads output ~1e-7 everywhere; wider weights give a
    random teacher whose maps vary (so resizing and inversion are actually checked)."""
    import torch

    for param in model.parameters():
        if param.ndim > 1:
            torch.nn.init.normal_(param, 0.0, gain / param[0].numel() ** 0.5)


def save_tiny_depth_anything(
    folder,
    depth_type: str = "relative",
    processor: bool = True,
    image_size: int = 56,
    seed: int = 0,
):
    """A randomly initialised 4-block Depth Anything (DINOv2, patch 14, width 32) saved with
    `save_pretrained`, plus a DPT image processor unless `processor` is False."""
    import os
    from pathlib import Path

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        DPTImageProcessor,
    )

    torch.manual_seed(seed)
    backbone = Dinov2Config(
        **TINY_TRANSFORMER,
        patch_size=14,
        image_size=image_size,
        out_indices=[1, 2, 3, 4],
        reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=32,
        neck_hidden_sizes=[8, 16, 32, 64],
        fusion_hidden_size=16,
        head_hidden_size=8,
        depth_estimation_type=depth_type,
        max_depth=20,
    )
    model = DepthAnythingForDepthEstimation(config).eval()
    _spread_weights(model)
    if depth_type == "relative":
        torch.nn.init.constant_(model.head.conv3.bias, 1.0)  # mostly positive maps
    model.save_pretrained(folder)
    if processor:
        DPTImageProcessor(
            size={"height": image_size, "width": image_size},
            keep_aspect_ratio=True,
            ensure_multiple_of=14,
            image_mean=list(IMAGENET_MEAN),
            image_std=list(IMAGENET_STD),
            do_pad=False,
        ).save_pretrained(folder)
    return Path(folder)


def save_tiny_dpt(folder, seed: int = 0):
    """A randomly initialised 4-block DPT (ViT, patch 16, image size 32), no processor file."""
    import os
    from pathlib import Path

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import DPTConfig, DPTForDepthEstimation

    torch.manual_seed(seed)
    config = DPTConfig(
        **TINY_TRANSFORMER,
        image_size=32,
        patch_size=16,
        backbone_out_indices=[0, 1, 2, 3],
        neck_hidden_sizes=[8, 16, 32, 64],
        fusion_hidden_size=16,
    )
    model = DPTForDepthEstimation(config).eval()
    _spread_weights(model)
    model.save_pretrained(folder)
    return Path(folder)


def save_tiny_dinov2(folder):
    """A Hugging Face model folder that is not a depth model (a bare DINOv2 encoder)."""
    import os
    from pathlib import Path

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import Dinov2Config, Dinov2Model

    Dinov2Model(
        Dinov2Config(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
        )
    ).save_pretrained(folder)
    return Path(folder)
