"""Deployable students: a depth-distill model as one ONNX file that runs without this project.

The graph takes an RGB batch (float NCHW in [0, 1], or uint8 NHWC as decoded), normalises and
pads it to the backbone's stride inside, and returns disparity at the input size; batch, height
and width are dynamic wherever the backbone traces so. Its metadata carries the model config
and the project version, which is how `load_onnx_model` recognises an export of ours.
"""

from depth_core.export.config import ExportConfig
from depth_core.export.exporter import (
    ExportReport,
    OnnxExportError,
    export_checkpoint,
    export_model,
)
from depth_core.export.metadata import OnnxModelError, read_export_metadata
from depth_core.export.parity import ParityError, parity_images
from depth_core.export.runtime import OnnxDepthModel, load_onnx_model, onnx_latency_ms

__all__ = [
    "ExportConfig",
    "ExportReport",
    "OnnxDepthModel",
    "OnnxExportError",
    "OnnxModelError",
    "ParityError",
    "export_checkpoint",
    "export_model",
    "load_onnx_model",
    "onnx_latency_ms",
    "parity_images",
    "read_export_metadata",
]
