"""The ONNX metadata_props that make a file a depth-distill export, and reading them back."""

from __future__ import annotations

import json
import os
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

from depth_core.models.checkpoint import CheckpointError
from depth_core.models.config import ModelConfig

FORMAT_KEY = "depth_distill.format"
FORMAT_VALUE = "onnx-1"
CONFIG_KEY = "depth_distill.model_config"
VERSION_KEY = "depth_distill.version"
INPUT_FORMAT_KEY = "depth_distill.input_format"
INPUT_MULTIPLE_KEY = "depth_distill.input_multiple"
FIXED_SIZE_KEY = "depth_distill.fixed_size"  # "H,W" when height and width are not dynamic
CHECKPOINT_KEY = "depth_distill.checkpoint_metadata"
INPUT_NAME = "image"
OUTPUT_NAME = "disparity"


class OnnxModelError(CheckpointError):
    """An .onnx file that is missing, unreadable or not exported by depth-distill."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(path, reason)
        self.args = (f"onnx model {self.path}: {reason}",)

    def __str__(self) -> str:
        return self.args[0]


def project_version() -> str:
    try:
        return package_metadata.version("depth-distill")
    except package_metadata.PackageNotFoundError:
        return "unknown"


def export_metadata(
    config: ModelConfig,
    input_format: str,
    input_multiple: tuple[int, int],
    fixed_size: tuple[int, int] | None,
    checkpoint_metadata: dict[str, Any] | None = None,
) -> dict[str, str]:
    """The metadata_props written into every export (strings only, as ONNX requires)."""
    props = {
        FORMAT_KEY: FORMAT_VALUE,
        CONFIG_KEY: config.model_dump_json(),
        VERSION_KEY: project_version(),
        INPUT_FORMAT_KEY: input_format,
        INPUT_MULTIPLE_KEY: f"{input_multiple[0]},{input_multiple[1]}",
        CHECKPOINT_KEY: json.dumps(checkpoint_metadata or {}, sort_keys=True, default=str),
    }
    if fixed_size is not None:
        props[FIXED_SIZE_KEY] = f"{fixed_size[0]},{fixed_size[1]}"
    return props


def _pair(text: str) -> tuple[int, int]:
    first, second = (int(v) for v in text.split(","))
    return first, second


def read_export_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Config, input format, stride multiple and fixed size of an export; OnnxModelError
    naming the file when it is not one of ours."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise OnnxModelError(path, "file not found")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # protobuf raises several unrelated types
        raise OnnxModelError(path, f"not a readable ONNX file ({error})") from error
    props = {p.key: p.value for p in model.metadata_props}
    if props.get(FORMAT_KEY) != FORMAT_VALUE or CONFIG_KEY not in props:
        raise OnnxModelError(
            path,
            "not a depth-distill export (its metadata has no depth_distill.format / "
            "model config); export a checkpoint with `depth-distill export`",
        )
    try:
        return {
            "config": ModelConfig.model_validate_json(props[CONFIG_KEY]),
            "version": props.get(VERSION_KEY, "unknown"),
            "input_format": props[INPUT_FORMAT_KEY],
            "input_multiple": _pair(props[INPUT_MULTIPLE_KEY]),
            "fixed_size": _pair(props[FIXED_SIZE_KEY]) if FIXED_SIZE_KEY in props else None,
            "checkpoint_metadata": json.loads(props.get(CHECKPOINT_KEY, "{}")),
        }
    except (KeyError, ValueError) as error:
        raise OnnxModelError(path, f"invalid depth-distill metadata ({error})") from error
