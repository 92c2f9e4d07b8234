"""Self-describing model checkpoints: one safetensors file that rebuilds its model.

The safetensors header metadata (string to string) carries the ``ModelConfig`` as JSON under
``depth_distill.model_config`` and the caller's metadata as JSON under ``depth_distill.metadata``.
Weights are plain tensors, so loading never runs pickled code.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from depth_core.atomic_io import atomic_path, json_text
from depth_core.models.config import LEGACY_OUTPUT_ACTIVATION, ModelConfig
from depth_core.models.depth_model import DepthModel, build_model
from depth_core.models.weights import IMAGENET_MEAN, IMAGENET_STD

# What a model's checkpoint is called in its folder (a trained teacher's or student's).
CHECKPOINT_FILE = "model.safetensors"
FORMAT_KEY = "depth_distill.format"
FORMAT_VERSION = "1"
CONFIG_KEY = "depth_distill.model_config"
METADATA_KEY = "depth_distill.metadata"


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or not one of this project's checkpoints."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        super().__init__(f"checkpoint {self.path}: {reason}")


def save_checkpoint(
    path: str | os.PathLike, model: DepthModel, metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` (weights + config) and JSON-serialisable ``metadata`` atomically."""
    path = Path(path)
    config = getattr(model, "config", None)
    if not isinstance(config, ModelConfig):
        raise TypeError(
            f"save_checkpoint needs a DepthModel with a ModelConfig, got {type(model).__name__}"
        )
    try:
        metadata_json = json_text(metadata or {}, indent=None, sort_keys=True)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"checkpoint metadata for {path} is not JSON-serialisable: {error}"
        ) from error
    header = {
        "format": "pt",
        FORMAT_KEY: FORMAT_VERSION,
        CONFIG_KEY: config.model_dump_json(),
        METADATA_KEY: metadata_json,
    }
    tensors = {
        name: tensor.detach().to("cpu").contiguous() for name, tensor in model.state_dict().items()
    }
    with atomic_path(path) as temp:
        save_file(tensors, str(temp), metadata=header)
        _sort_header(temp)
    return path


def _sort_header(path: Path) -> None:
    """Rewrite a safetensors header with sorted keys, in place (same length, same offsets).

    safetensors writes its header from a hash map, in an order that changes between calls;
    sorted, the same weights and metadata always give the same bytes (and the same DVC md5).
    """
    with open(path, "r+b") as handle:
        size = struct.unpack("<Q", handle.read(8))[0]
        header = json.loads(handle.read(size))
        text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        if len(text) > size:  # cannot happen for a header safetensors wrote compactly
            raise CheckpointError(path, "sorted safetensors header is longer than the original")
        handle.seek(8)
        handle.write(text.ljust(size, b" "))  # the format allows trailing spaces


def _read_header(path: str | os.PathLike) -> dict[str, str]:
    """The safetensors metadata of one of our checkpoints, or CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "checkpoint file not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            path, f"not a readable safetensors file (corrupt or truncated? {error})"
        ) from error
    if CONFIG_KEY not in header:
        raise CheckpointError(
            path, "safetensors file without a depth-distill model config (foreign checkpoint)"
        )
    return header


def read_checkpoint_config(path: str | os.PathLike) -> ModelConfig:
    """The ModelConfig stored in a checkpoint, without loading weights."""
    try:
        stored = json.loads(_read_header(path)[CONFIG_KEY])
        if isinstance(stored, dict):  # saved before these fields existed
            stored.setdefault("output_activation", LEGACY_OUTPUT_ACTIVATION)
            stored.setdefault("input_mean", IMAGENET_MEAN)
            stored.setdefault("input_std", IMAGENET_STD)
        return ModelConfig.model_validate(stored)
    except (ValidationError, json.JSONDecodeError) as error:
        raise CheckpointError(path, f"invalid model config in checkpoint ({error})") from error


def read_checkpoint_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The user metadata stored in a checkpoint, without loading weights."""
    raw = _read_header(path).get(METADATA_KEY, "{}")
    try:
        metadata = json.loads(raw)
    except json.JSONDecodeError as error:
        raise CheckpointError(path, f"invalid metadata JSON in checkpoint ({error})") from error
    if not isinstance(metadata, dict):
        raise CheckpointError(path, "checkpoint metadata is not a JSON object")
    return metadata


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[DepthModel, dict[str, Any]]:
    """Rebuild the model stored in ``path`` (in eval mode) and return it with its metadata.

    ``config.pretrained`` is kept for provenance but not read: the checkpoint has all weights.
    """
    config = read_checkpoint_config(path)
    metadata = read_checkpoint_metadata(path)
    device = torch.device(map_location)
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(path, f"could not read checkpoint tensors ({error})") from error
    try:
        model = build_model(config, load_pretrained=False)
    except (ValueError, RuntimeError) as error:
        raise CheckpointError(
            path, f"cannot rebuild the model of this checkpoint ({error})"
        ) from error
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(
        k for k in set(expected) & set(state) if expected[k].shape != state[k].shape
    )
    if missing or unexpected or wrong_shape:
        raise CheckpointError(
            path,
            "checkpoint weights do not match its model config "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong_shape[:3]})",
        )
    model.load_state_dict(state)
    return model.to(device).eval(), metadata
