"""Device selection and mixed precision, so the same code runs on a laptop CPU and on GPUs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

AMP_DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def check_device_name(name: str) -> str:
    """The spelling of a device preference, checked without touching any device (params)."""
    choice = str(name).strip().lower()
    index = choice.removeprefix("cuda:")
    if choice in ("auto", "cpu", "cuda") or (choice.startswith("cuda:") and index.isdigit()):
        return name
    raise ValueError(f"unknown device {name!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'")


def pick_device(preference: str | torch.device = "auto") -> torch.device:
    """``"auto"`` (CUDA if present, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``."""
    if isinstance(preference, torch.device):
        preference = str(preference)
    choice = str(preference).strip().lower()
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cpu":
        return torch.device("cpu")
    if choice == "cuda" or choice.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {preference!r} requested but CUDA is not available")
        device = torch.device(choice)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {preference!r}: only {torch.cuda.device_count()} CUDA device(s) present"
            )
        return device
    raise ValueError(f"unknown device {preference!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'")


def device_name(device: str | torch.device) -> str:
    """A readable name for reports: the GPU model for CUDA devices, else the device string."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def supports_bf16(device: str | torch.device) -> bool:
    """Whether bfloat16 autocast works on ``device`` (fast on CPUs with AMX / recent GPUs)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu"


def amp_dtype(name: str | torch.dtype | None) -> torch.dtype | None:
    """``"fp32"``/None -> None (no autocast), ``"bf16"``, ``"fp16"`` -> the torch dtype."""
    if name is None or name == torch.float32:
        return None
    if isinstance(name, torch.dtype):
        if name not in AMP_DTYPES.values():
            raise ValueError(f"unsupported autocast dtype {name}; use one of {sorted(AMP_DTYPES)}")
        return name
    key = str(name).lower()
    if key not in AMP_DTYPES:
        raise ValueError(f"unknown precision {name!r}; use one of {sorted(AMP_DTYPES)}")
    return AMP_DTYPES[key]


@contextlib.contextmanager
def autocast(
    device: str | torch.device, dtype: str | torch.dtype | None = "fp32"
) -> Iterator[None]:
    """``torch.autocast`` for ``device`` in ``dtype``; a no-op for fp32."""
    target = amp_dtype(dtype)
    if target is None:
        yield
        return
    device = torch.device(device)
    if target == torch.bfloat16 and not supports_bf16(device):
        raise ValueError(f"bf16 autocast is not supported on {device}")
    with torch.autocast(device_type=device.type, dtype=target):
        yield
