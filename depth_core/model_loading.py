"""One loader for every place a model is read from a path (inference, labelling, voting, CLI).

A path is a depth-distill checkpoint (one .safetensors file that rebuilds its model), the
authors' Depth Anything V1 / V2 .pth file (`depth_core.models.official_depth_anything`), a
local Hugging Face depth-estimation folder (a directory with config.json), or a depth-distill
ONNX export (an .onnx file, run by onnxruntime on the CPU). Training keeps
`load_checkpoint`: it needs a DepthModel it can optimise.

It sits above `depth_core.models` and `depth_core.export` (the ONNX runtime builds on the
models' config), so it reaches all three kinds without either package importing it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from depth_core.export.runtime import load_onnx_model
from depth_core.models.checkpoint import CheckpointError, load_checkpoint, read_checkpoint_config
from depth_core.models.official_depth_anything import (
    detect_variant,
    is_official_checkpoint,
    load_official_model,
    read_state,
)
from depth_core.models.transformers_teacher import (
    check_transformers_folder,
    load_transformers_model,
)

ModelKind = Literal["checkpoint", "transformers", "onnx"]
ONNX_SUFFIX = ".onnx"


def model_kind(path: str | os.PathLike) -> ModelKind:
    """'transformers' for a folder, 'onnx' for an .onnx file, 'checkpoint' for another file;
    CheckpointError when neither exists."""
    path = Path(path)
    if path.is_dir():
        return "transformers"
    if path.is_file():
        return "onnx" if path.suffix.lower() == ONNX_SUFFIX else "checkpoint"
    raise CheckpointError(path, "no such checkpoint file or model folder")


def check_model_path(path: str | os.PathLike, kind: ModelKind) -> Path:
    """Fail early (headers and JSON only, no weights) unless `path` holds a model of `kind`."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(path, "does not exist")
    if kind == "checkpoint":
        if not path.is_file():
            raise CheckpointError(
                path,
                "is a folder; a depth-distill .safetensors file or a Depth Anything .pth "
                "file is expected",
            )
        if is_official_checkpoint(path):
            detect_variant(read_state(path), path)
        else:
            read_checkpoint_config(path)
    elif kind == "transformers":
        check_transformers_folder(path)
    else:
        raise ValueError(f"unknown model kind {kind!r} (checkpoint or transformers)")
    return path


def load_depth_model(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """The model stored at `path` in eval mode, with its metadata.

    Both kinds map (B, 3, H, W) images in [0, 1] to (B, H, W) non-negative disparity and carry
    `config.img_size` and `input_multiple` for `depth_core.inference`. For a checkpoint the
    metadata is the checkpoint's own; for a folder it describes the wrapped model; for an ONNX
    export it is the export's metadata (the model runs on the CPU whatever `map_location`).
    """
    kind = model_kind(path)
    if kind == "transformers":
        return load_transformers_model(path, map_location)
    if kind == "onnx":
        return load_onnx_model(path)
    if is_official_checkpoint(path):
        return load_official_model(path, map_location)
    return load_checkpoint(path, map_location)
