"""The ONNX metadata_props that make a file a depth-distill export, and reading them back."""

from __future__ import annotations

import hashlib
import json
import os
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError

from depth_core.export.config import InputFormat
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
# {key: sha256 of its value} for every other depth_distill.* entry: an edit names its key.
DIGEST_KEY = "depth_distill.metadata_sha256"
PRODUCER = "depth-distill"
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
    props[DIGEST_KEY] = json.dumps(_value_digests(props), sort_keys=True)
    return props


def _value_digests(props: dict[str, str]) -> dict[str, str]:
    return {
        key: hashlib.sha256(value.encode()).hexdigest()
        for key, value in props.items()
        if key.startswith("depth_distill.") and key != DIGEST_KEY
    }


def _edited_keys(props: dict[str, str]) -> list[str]:
    """The depth_distill.* entries changed, added or removed since export; none for an
    export written before the digest existed."""
    if DIGEST_KEY not in props:
        return []
    try:
        recorded = json.loads(props[DIGEST_KEY])
    except ValueError:
        return [DIGEST_KEY]
    if not isinstance(recorded, dict):
        return [DIGEST_KEY]
    current = _value_digests(props)
    return sorted(k for k in recorded.keys() | current.keys() if recorded.get(k) != current.get(k))


def _pair(text: str) -> tuple[int, int]:
    """'H,W' as two positive ints (a stride multiple or a fixed size)."""
    first, second = (int(v) for v in text.split(","))
    if first < 1 or second < 1:
        raise ValueError("both values must be positive")
    return first, second


def _input_format(text: str) -> str:
    if text not in get_args(InputFormat):
        raise ValueError(f"expected one of {', '.join(get_args(InputFormat))}")
    return text


def _json_object(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise TypeError("not a JSON object")
    return value


def error_line(error: Exception) -> str:
    """An error's message on one line (pydantic's, protobuf's and onnxruntime's span several)."""
    if isinstance(error, ValidationError):
        return "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}"
            for e in error.errors(include_url=False)
        )
    return " ".join(str(error).split())


def _entry(path: Path, props: dict[str, str], key: str, parse) -> Any:
    """``parse(props[key])``; OnnxModelError naming the file and the key otherwise."""
    if key not in props:
        raise OnnxModelError(path, f"its metadata has no {key}; export the checkpoint again")
    try:
        return parse(props[key])
    except (ValueError, TypeError) as error:  # pydantic's ValidationError is a ValueError
        raise OnnxModelError(
            path, f"invalid metadata {key} = {props[key][:80]!r} ({error_line(error)[:200]})"
        ) from error


def _load_graph(path: Path):
    """The model proto without its external tensors (so nothing else is opened yet)."""
    import onnx

    if not path.is_file():
        raise OnnxModelError(path, "file not found")
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as error:  # protobuf raises several unrelated types
        raise OnnxModelError(
            path, f"not a readable ONNX file, truncated or corrupt ({error_line(error)})"
        ) from error


def _tensors(graph):
    """Every tensor a graph stores: initializers and node attributes, subgraphs included."""
    yield from graph.initializer
    yield from (sparse.values for sparse in graph.sparse_initializer)
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            subgraphs = [attribute.g] if attribute.HasField("g") else []
            for subgraph in [*subgraphs, *attribute.graphs]:
                yield from _tensors(subgraph)


def _check_external_data(path: Path, model) -> None:
    """Refuse external tensor data outside the model's folder (a relative location that
    climbs out, an absolute one, or a link that leads out), missing or too short, before
    onnxruntime opens any of it: an .onnx file must not make us read other files."""
    from onnx import TensorProto

    folder = path.parent.resolve()
    for tensor in _tensors(model.graph):
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        target = (folder / location).resolve()
        what = f"external data location {location!r} (tensor {tensor.name!r})"
        if not location or Path(location).is_absolute() or not target.is_relative_to(folder):
            raise OnnxModelError(
                path, f"{what} is outside the model's folder {folder}; it is not opened"
            )
        if not target.is_file():
            raise OnnxModelError(path, f"{what}: file not found")
        try:
            end = int(info.get("offset") or 0) + int(info.get("length") or 0)
        except ValueError:
            raise OnnxModelError(path, f"{what}: offset or length is not a number") from None
        if end > target.stat().st_size:
            raise OnnxModelError(
                path, f"{what}: file is truncated ({target.stat().st_size} bytes, needs {end})"
            )


def _check_signature(path: Path, model, input_format: str, fixed: tuple[int, int] | None):
    """The graph takes ``image`` in the format and size the metadata says, and returns
    ``disparity``: what the runtime will feed it and fetch."""
    from onnx import TensorProto

    inputs = {i.name: i.type.tensor_type for i in model.graph.input}
    outputs = {o.name for o in model.graph.output}
    if INPUT_NAME not in inputs or OUTPUT_NAME not in outputs:
        raise OnnxModelError(
            path, f"the graph has no input {INPUT_NAME!r} or no output {OUTPUT_NAME!r}"
        )
    image = inputs[INPUT_NAME]
    dtype = TensorProto.UINT8 if input_format == "uint8" else TensorProto.FLOAT
    if image.elem_type != dtype:
        raise OnnxModelError(
            path,
            f"metadata {INPUT_FORMAT_KEY} = {input_format!r} but the graph's input "
            f"{INPUT_NAME!r} is {TensorProto.DataType.Name(image.elem_type)}",
        )
    axes = (1, 2) if input_format == "uint8" else (2, 3)
    dims = [image.shape.dim[a].dim_value for a in axes] if len(image.shape.dim) == 4 else None
    if dims is not None and tuple(dims) != (tuple(fixed) if fixed else (0, 0)):
        raise OnnxModelError(
            path,
            f"metadata {FIXED_SIZE_KEY} = {fixed} but the graph's input {INPUT_NAME!r} "
            f"has height and width {tuple(d or 'dynamic' for d in dims)}",
        )


def read_export_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Config, input format, stride multiple and fixed size of an export; OnnxModelError
    naming the file (and the metadata key) when it is not one of ours, was edited since
    export, or keeps tensor data outside its folder."""
    path = Path(path)
    model = _load_graph(path)
    props = {p.key: p.value for p in model.metadata_props}
    if props.get(FORMAT_KEY) != FORMAT_VALUE or CONFIG_KEY not in props:
        hint = (
            "it names depth-distill as its producer, so it was truncated or edited"
            if model.producer_name == PRODUCER
            else "export a checkpoint with `depth-distill export`"
        )
        raise OnnxModelError(
            path,
            "not a depth-distill export (its metadata has no depth_distill.format / "
            f"model config); {hint}",
        )
    edited = _edited_keys(props)
    if edited:
        raise OnnxModelError(
            path,
            f"its metadata was changed after export (entries that differ from "
            f"{DIGEST_KEY}: {', '.join(edited)}); export the checkpoint again",
        )
    meta = {
        "config": _entry(path, props, CONFIG_KEY, ModelConfig.model_validate_json),
        "version": props.get(VERSION_KEY, "unknown"),
        "input_format": _entry(path, props, INPUT_FORMAT_KEY, _input_format),
        "input_multiple": _entry(path, props, INPUT_MULTIPLE_KEY, _pair),
        "fixed_size": _entry(path, props, FIXED_SIZE_KEY, _pair)
        if FIXED_SIZE_KEY in props
        else None,
        "checkpoint_metadata": _entry(path, props, CHECKPOINT_KEY, _json_object)
        if CHECKPOINT_KEY in props
        else {},
    }
    _check_signature(path, model, meta["input_format"], meta["fixed_size"])
    _check_external_data(path, model)
    return meta
