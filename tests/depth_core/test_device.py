import pytest
import torch

from depth_core.device import amp_dtype, autocast, pick_device, supports_bf16


def test_pick_device_resolves_names():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(torch.device("cpu")) == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device("auto").type == expected
    assert pick_device(" AUTO ").type == expected


def test_pick_device_rejects_unknown_and_unavailable():
    with pytest.raises(ValueError, match="'tpu'"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="cuda:1"):
            pick_device("cuda:1")
    else:
        with pytest.raises(ValueError, match="cuda:99"):
            pick_device("cuda:99")


def test_amp_dtype_names():
    assert (
        amp_dtype("fp32") is None and amp_dtype(None) is None and amp_dtype(torch.float32) is None
    )
    assert amp_dtype("bf16") == torch.bfloat16 and amp_dtype("FP16") == torch.float16
    assert amp_dtype(torch.bfloat16) == torch.bfloat16
    with pytest.raises(ValueError, match="'int8'"):
        amp_dtype("int8")


def test_autocast_runs_matmul_in_bf16_and_fp32_is_a_no_op():
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    assert supports_bf16("cpu")
    with autocast("cpu", "bf16"):
        assert (a @ b).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), "fp32"):
        assert (a @ b).dtype == torch.float32
        assert not torch.is_autocast_enabled("cpu")
