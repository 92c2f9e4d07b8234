"""fp32 / bf16 choice: explicit settings pass through, "auto" follows the device's measurement."""

from __future__ import annotations

import pytest
import torch

from depth_core.training import precision


def test_explicit_choices():
    cpu = torch.device("cpu")
    assert precision.resolve_precision("fp32", cpu) == "fp32"
    assert precision.resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ValueError, match="precision"):
        precision.resolve_precision("fp8", cpu)


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_on_cpu_depends_on_native_bf16(monkeypatch, native, expected):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    assert precision.resolve_precision("auto", torch.device("cpu")) == expected


def test_native_bf16_detection_reads_cpu_flags(monkeypatch, tmp_path):
    fake = tmp_path / "cpuinfo"
    fake.write_text("flags\t: fpu avx512f avx512_bf16 sse\n")
    real_path = precision.Path
    monkeypatch.setattr(precision, "Path", lambda p: fake if p == "/proc/cpuinfo" else real_path(p))
    assert precision.cpu_has_native_bf16()
    fake.write_text("flags\t: fpu avx2 sse\n")
    assert not precision.cpu_has_native_bf16()
