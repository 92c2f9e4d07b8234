"""Export of each default student architecture, parity on three sizes, and the refusals."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from depth_core.export import (
    ExportConfig,
    OnnxExportError,
    ParityError,
    export_checkpoint,
    export_model,
    load_onnx_model,
)
from depth_core.models import ModelConfig, build_model
from tests.depth_core.export.conftest import STUDENT_ARCHITECTURES, student_checkpoint
from tests.helpers import TINY_VIT

THREE_SIZES = [(96, 128), (128, 80), (75, 131)]  # landscape, portrait, not a stride multiple


@pytest.mark.parametrize("name", sorted(STUDENT_ARCHITECTURES))
def test_each_student_exports_with_dynamic_shapes_and_parity(name, tmp_path):
    checkpoint, model = student_checkpoint(tmp_path, name)
    report = export_checkpoint(checkpoint, tmp_path / f"{name}.onnx", ExportConfig())
    assert report.fixed_size is None and report.note == ""
    assert sorted(report.parity_by_size) == sorted(f"{h}x{w}" for h, w in THREE_SIZES)
    assert report.parity_max_rel_diff < 1e-3
    graph = onnx.load(report.path)
    assert graph.opset_import[0].version >= 17
    dims = [d.dim_param for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "", "height", "width"]
    exported, meta = load_onnx_model(report.path, threads=1)
    assert meta["config"] == model.config and meta["version"]
    # Sizes the parity check did not see, batch 3, odd sides: still the PyTorch output.
    x = torch.rand(3, 3, 41, 97)
    with torch.inference_mode():
        np.testing.assert_allclose(exported(x), model(x), rtol=1e-4, atol=1e-4)


def test_uint8_nhwc_input_is_converted_in_the_graph(small_student, tmp_path):
    checkpoint, model = small_student
    report = export_checkpoint(checkpoint, tmp_path / "u8.onnx", ExportConfig(input_format="uint8"))
    exported, meta = load_onnx_model(report.path, threads=1)
    assert meta["input_format"] == "uint8"
    images = np.random.default_rng(0).integers(0, 256, (2, 50, 70, 3), dtype=np.uint8)
    out = exported.run(images)
    with torch.inference_mode():
        expected = model(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0)
    np.testing.assert_allclose(out, expected.numpy(), rtol=1e-4, atol=1e-4)


def test_a_vit_is_exported_at_its_fixed_size_with_the_reason(tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelConfig(**TINY_VIT))
    with pytest.warns(UserWarning, match="fixed 32x32"):
        report = export_model(model, tmp_path / "vit.onnx")
    assert report.fixed_size == (32, 32)
    assert "vit_tiny_patch16_224" in report.note and "_upsample_bicubic2d_aa" in report.note
    exported, meta = load_onnx_model(report.path, threads=1)
    assert meta["fixed_size"] == (32, 32)
    assert tuple(exported(torch.rand(2, 3, 40, 24)).shape) == (2, 40, 24)  # resized in and out


@torch.library.custom_op("depth_distill_tests::opaque", mutates_args=())
def _opaque(x: torch.Tensor) -> torch.Tensor:
    return x.clone()


@_opaque.register_fake
def _(x):
    return torch.empty_like(x)


class _Opaque(torch.nn.Module):
    def forward(self, x):
        return _opaque(x)


def test_an_unsupported_operator_fails_naming_it_and_the_backbone(small_student, tmp_path):
    _, model = small_student
    model = build_model(model.config, load_pretrained=False)
    model.head.output_conv2.append(_Opaque())
    with (
        pytest.warns(UserWarning),
        pytest.raises(OnnxExportError, match="depth_distill_tests::opaque") as error,
    ):
        export_model(model, tmp_path / "x.onnx")
    assert "tf_efficientnet_lite0" in str(error.value)
    assert not (tmp_path / "x.onnx").exists()


def test_an_export_above_the_tolerance_is_not_written(small_student, tmp_path):
    checkpoint, _ = small_student
    config = ExportConfig(parity_tolerance=1e-12, parity_sizes=[(75, 131)])
    with pytest.warns(UserWarning), pytest.raises(ParityError, match="more than 1e-12"):
        export_checkpoint(checkpoint, tmp_path / "strict.onnx", config)
    assert not (tmp_path / "strict.onnx").exists()
