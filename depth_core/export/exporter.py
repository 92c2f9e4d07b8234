"""Checkpoint -> ONNX with the TorchScript-based exporter of ``torch.onnx.export``.

Why that exporter: it traces a student in about two seconds and records the shape arithmetic
of the padding and cropping (``x.shape`` -> Pad / Slice inputs), so one trace at a size that
needs padding serves every batch, height and width. The torch.export-based exporter
(``dynamo=True``) also traced these models correctly, but took over nine minutes to solve
the symbolic shapes of one EfficientNet-Lite student on a 2-core CPU.

A trace records what happened at one input size; a backbone whose shape logic runs in Python
(not in traced tensor ops) would silently keep that size. So the dynamic export is only kept
if it matches PyTorch at every parity size; otherwise, or when the dynamic trace needs an
operator ONNX lacks, the model is exported again at its fixed training size (dynamic batch),
and the report says why. timm's plain ViTs are such a case: at any other size they resample
their position embeddings with antialiased bicubic interpolation, which has no ONNX
operator; at the training size they need none.
"""

from __future__ import annotations

import io
import os
import re
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from depth_core.atomic_io import atomic_write
from depth_core.export import parity
from depth_core.export.config import ExportConfig
from depth_core.export.metadata import INPUT_NAME, OUTPUT_NAME, export_metadata
from depth_core.export.runtime import OnnxDepthModel, make_session
from depth_core.file_digest import file_digest
from depth_core.models.checkpoint import load_checkpoint
from depth_core.models.depth_model import DepthModel


class OnnxExportError(ValueError):
    """The model cannot be expressed in ONNX (an operator without a translation)."""


@dataclass
class ExportReport:
    """What was written and how well it matches PyTorch; ``fixed_size`` is None when
    height and width are dynamic, and ``note`` then says nothing."""

    path: str
    bytes: int
    sha256: str
    md5: str
    input_format: str
    opset: int
    parity_max_rel_diff: float
    parity_by_size: dict[str, float]
    fixed_size: tuple[int, int] | None = None
    note: str = ""
    export_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ExportGraph(nn.Module):
    """The exported function: the input format's conversion, then the DepthModel itself
    (normalisation, padding to the stride, the network, cropping back)."""

    def __init__(self, model: DepthModel, input_format: str):
        super().__init__()
        self.model = model
        self.input_format = input_format

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.input_format == "uint8":
            image = image.permute(0, 3, 1, 2).float() / 255.0
        return self.model(image)


def _example(model: DepthModel, input_format: str, size: tuple[int, int]) -> torch.Tensor:
    height, width = size
    if input_format == "uint8":
        return torch.randint(0, 256, (2, height, width, 3), dtype=torch.uint8)
    return torch.rand(2, 3, height, width)


def trace_size(model: DepthModel) -> tuple[int, int]:
    """A size that is not a multiple of the stride, so the padding is part of the trace."""
    mh, mw = model.input_multiple
    side = model.config.img_size
    return max(mh, side - side % mh) + 1, max(mw, side - side % mw) + 3


def fixed_size(model: DepthModel) -> tuple[int, int]:
    """The square training size, a multiple of the stride (what a fixed export accepts)."""
    mh, mw = model.input_multiple
    side = model.config.img_size
    return max(mh, round(side / mh) * mh), max(mw, round(side / mw) * mw)


def _dynamic_axes(input_format: str, dynamic: bool) -> dict[str, dict[int, str]]:
    spatial = (1, 2) if input_format == "uint8" else (2, 3)
    axes_in = {0: "batch"}
    axes_out = {0: "batch"}
    if dynamic:
        axes_in.update({spatial[0]: "height", spatial[1]: "width"})
        axes_out.update({1: "height", 2: "width"})
    return {INPUT_NAME: axes_in, OUTPUT_NAME: axes_out}


def unsupported_operator(error: Exception) -> str:
    """The ``namespace::op`` an exporter error is about, or 'an unknown operator'."""
    found = re.search(r"([A-Za-z_][\w.]*::[\w.]+)", str(error))
    return found.group(1) if found else "an unknown operator"


def _trace(graph: ExportGraph, example: torch.Tensor, opset: int, dynamic: bool, name: str):
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about shape-derived Python values
            torch.onnx.export(
                graph,
                (example,),
                buffer,
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes=_dynamic_axes(graph.input_format, dynamic),
                do_constant_folding=True,
            )
    except (torch.onnx.OnnxExporterError, RuntimeError, TypeError) as error:
        backbone = graph.model.config.backbone
        raise OnnxExportError(
            f"{name}: backbone {backbone!r} cannot be exported to ONNX opset {opset}: "
            f"operator {unsupported_operator(error)} has no ONNX translation "
            f"({str(error).strip().splitlines()[0][:300]})"
        ) from error
    return buffer.getvalue()


def _with_metadata(onnx_bytes: bytes, props: dict[str, str]) -> bytes:
    import onnx

    proto = onnx.load_from_string(onnx_bytes)
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "depth-distill"
    proto.doc_string = "depth-distill monocular depth: RGB image batch -> disparity (B, H, W)"
    return proto.SerializeToString()


def _attempt(model, config, dynamic, images, name, checkpoint_metadata):
    """One export and its parity figures: (onnx bytes, fixed size or None, figures)."""
    graph = ExportGraph(model, config.input_format).eval()
    size = trace_size(model) if dynamic else fixed_size(model)
    raw = _trace(graph, _example(model, config.input_format, size), config.opset, dynamic, name)
    fixed = None if dynamic else size
    props = export_metadata(
        model.config, config.input_format, model.input_multiple, fixed, checkpoint_metadata
    )
    onnx_bytes = _with_metadata(raw, props)
    exported = OnnxDepthModel(
        make_session(onnx_bytes), model.config, config.input_format, model.input_multiple, fixed
    )
    try:
        figures = parity.compare(model, exported, images)
    except Exception as error:  # noqa: BLE001 - onnxruntime fails at sizes a trace fixed
        figures = {f"onnxruntime failed: {str(error).splitlines()[0][:160]}": float("inf")}
    return onnx_bytes, fixed, figures


def _dynamic_or_why_not(model, config, images, name, checkpoint_metadata):
    """The dynamic-shape attempt, or (None, the reason it cannot be kept)."""
    try:
        attempt = _attempt(model, config, True, images, name, checkpoint_metadata)
    except OnnxExportError as error:
        return None, f"its dynamic-shape trace failed: {error}"
    if not max(attempt[2].values()) <= config.parity_tolerance:
        return None, f"its dynamic-shape graph disagrees with PyTorch ({attempt[2]})"
    return attempt, ""


def export_model(
    model: DepthModel,
    output: str | os.PathLike,
    config: ExportConfig | None = None,
    dynamic: bool = True,
    name: str | None = None,
    checkpoint_metadata: dict[str, Any] | None = None,
) -> ExportReport:
    """Export ``model`` to ``output`` (atomically, only once parity passed) and report.

    Dynamic batch, height and width when the backbone traces so; otherwise (or with
    ``dynamic=False``) a fixed square training size with a dynamic batch, and ``note`` says
    why. OnnxExportError names the operator and the backbone when neither exports.
    """
    config = config or ExportConfig()
    name = name or f"model {model.config.backbone}"
    model = model.float().cpu().eval()
    start = time.perf_counter()
    attempt, note = None, ""
    if dynamic:
        images = parity.parity_images(
            config.parity_sizes, config.parity_images_per_size, config.parity_seed
        )
        attempt, why = _dynamic_or_why_not(model, config, images, name, checkpoint_metadata)
        if attempt is None:
            size = fixed_size(model)
            note = (
                f"backbone {model.config.backbone!r} cannot be exported with dynamic height and "
                f"width: {why}; exported at a fixed {size[0]}x{size[1]} (dynamic batch), "
                "inputs of other sizes are resized to it"
            )
            warnings.warn(f"{name}: {note}", stacklevel=2)
    if attempt is None:
        images = parity.parity_images([fixed_size(model)], config.parity_images_per_size)
        attempt = _attempt(model, config, False, images, name, checkpoint_metadata)
    onnx_bytes, fixed, figures = attempt
    worst = parity.check(figures, config, f"{name} -> {output}")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(output, onnx_bytes)
    return ExportReport(
        path=str(output),
        bytes=output.stat().st_size,
        sha256=file_digest(output, "sha256"),
        md5=file_digest(output, "md5"),
        input_format=config.input_format,
        opset=config.opset,
        parity_max_rel_diff=worst,
        parity_by_size=figures,
        fixed_size=fixed,
        note=note,
        export_seconds=round(time.perf_counter() - start, 2),
    )


def export_checkpoint(
    checkpoint: str | os.PathLike,
    output: str | os.PathLike,
    config: ExportConfig | None = None,
    dynamic: bool = True,
) -> ExportReport:
    """Export a depth-distill .safetensors checkpoint (see :func:`export_model`)."""
    model, _ = load_checkpoint(checkpoint)
    source = {
        "checkpoint": Path(checkpoint).name,
        "checkpoint_sha256": file_digest(checkpoint, "sha256"),
    }
    return export_model(model, output, config, dynamic, f"checkpoint {checkpoint}", source)
