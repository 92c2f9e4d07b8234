"""An ONNX file that is not a depth-distill export is refused, naming the file."""

from __future__ import annotations

import pytest
import torch

from depth_core.export import OnnxModelError, load_onnx_model
from depth_core.model_loading import load_depth_model
from depth_core.models import CheckpointError


def test_a_foreign_onnx_model_is_refused(tmp_path):
    path = tmp_path / "foreign.onnx"
    torch.onnx.export(torch.nn.Conv2d(3, 1, 3), (torch.rand(1, 3, 8, 8),), str(path), dynamo=False)
    with pytest.raises(OnnxModelError, match="foreign.onnx: not a depth-distill export"):
        load_onnx_model(path)
    with pytest.raises(CheckpointError, match="not a depth-distill export"):
        load_depth_model(path)


def test_a_corrupt_or_missing_file_is_named(tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x00 definitely not protobuf \xff" * 10)
    with pytest.raises(OnnxModelError, match="broken.onnx: not a readable ONNX file"):
        load_onnx_model(broken)
    with pytest.raises(CheckpointError, match="missing.onnx"):
        load_depth_model(tmp_path / "missing.onnx")
