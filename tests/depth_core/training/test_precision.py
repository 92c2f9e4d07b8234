"""fp32 / bf16 choice: explicit settings pass through, "auto" follows the measurement."""

from __future__ import annotations

import pytest
import torch

from depth_core.models import ModelConfig, build_model
from depth_core.training import precision


def test_explicit_choices():
    cpu = torch.device("cpu")
    assert precision.resolve_precision("fp32", cpu) == ("fp32", {})
    assert precision.resolve_precision("bf16", cpu) == ("bf16", {})
    with pytest.raises(ValueError, match="precision"):
        precision.resolve_precision("fp8", cpu)


def test_auto_without_native_bf16_is_fp32(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    model = torch.nn.Linear(2, 2)
    assert precision.resolve_precision("auto", torch.device("cpu"), model)[0] == "fp32"


@pytest.mark.parametrize(
    "seconds, expected",
    [({"fp32": 1.0, "bf16": 0.5}, "bf16"), ({"fp32": 0.5, "bf16": 1.0}, "fp32")],
)
def test_auto_keeps_the_faster(monkeypatch, seconds, expected):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(precision, "measure_step_seconds", lambda *a, **k: seconds)
    choice, measured = precision.resolve_precision(
        "auto", torch.device("cpu"), torch.nn.Linear(2, 2)
    )
    assert choice == expected and measured["step_seconds_fp32"] == seconds["fp32"]


def test_measurement_runs_on_a_copy(tiny_vit):
    model = build_model(ModelConfig(**tiny_vit))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seconds = precision.measure_step_seconds(model, 2, (32, 32), torch.device("cpu"), repeats=1)
    assert set(seconds) == {"fp32", "bf16"} and all(v > 0 for v in seconds.values())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
