"""Shared test fixtures data: the smallest real model, and running one CLI command module."""

from __future__ import annotations

import argparse
from types import ModuleType

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
