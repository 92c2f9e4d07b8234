"""timm backbones behind one small interface: an image in, four feature maps out.

A registry of families decides, from the instantiated timm model itself (not its name), how
to take four feature maps from it:

- ``vit``: plain vision transformers (a ``patch_embed`` followed by a flat stack of ``blocks``,
  all at one resolution). Four blocks are read with ``forward_intermediates`` and returned as
  ``(B, C, h, w)`` token maps on the patch grid; the DPT head resamples them into a pyramid.
- ``hierarchical``: convolutional (and other multi-stage) networks with timm ``feature_info``;
  the last four stages come from ``features_only=True`` and are already multi-scale.

Pretrained weights are only ever read from local disk (``ModelConfig.pretrained``: a file, or a
packaged source converted by ``depth_core.models.weights``) through timm's own loading path,
which adapts classifier heads, position embeddings (other image sizes) and patch embeddings
(other patch sizes) to the model being built.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from safetensors import SafetensorError
from torch import nn

from depth_core.models.config import ModelConfig
from depth_core.models.weights import WeightsError, resolve_weights_file


def _timm():
    """timm, imported on first model build: reading configs (params.yaml validation, the data
    stages) does not pay for its import."""
    import timm

    return timm


class Backbone(nn.Module):
    """Base class: ``forward(x)`` -> four ``(B, C_i, h_i, w_i)`` maps, finest first.

    Attributes set by subclasses: ``channels`` (C_i), ``reductions`` (input size / map size),
    ``input_multiple`` ((mh, mw): the input height and width must be multiples of these) and
    ``single_scale`` (True when all four maps share one resolution and need resampling).
    """

    channels: tuple[int, ...]
    reductions: tuple[int, ...]
    input_multiple: tuple[int, int]
    single_scale: bool

    def freeze_stages(self, n: int) -> None:
        """Keep the stem and the first ``n`` feature levels as they are (see ModelConfig)."""
        if n:
            raise ValueError(
                f"model.frozen_stages={n}: only hierarchical backbones (EfficientNet, ConvNeXt, "
                f"ResNet, ...) can freeze stages, not {type(self).__name__}"
            )


class ViTBackbone(Backbone):
    """Plain ViT: four intermediate blocks as token maps on the patch grid."""

    single_scale = True

    def __init__(self, model: nn.Module, layer_indices: tuple[int, ...]):
        super().__init__()
        depth = len(model.blocks)
        if max(layer_indices) >= depth:
            raise ValueError(
                f"layer_indices {tuple(layer_indices)} out of range for a backbone "
                f"with {depth} blocks"
            )
        # Blocks after the last one used (and the classifier) would only cost time.
        model.prune_intermediate_layers(list(layer_indices), prune_norm=False, prune_head=True)
        self.model = model
        self.layer_indices = tuple(int(i) for i in layer_indices)
        patch = tuple(model.patch_embed.patch_size)
        width = int(model.embed_dim)
        self.channels = (width,) * 4
        self.reductions = (patch[0],) * 4
        self.input_multiple = (int(patch[0]), int(patch[1]))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        # norm=True applies the final LayerNorm to each taken block, as DINOv2/Depth Anything do.
        return self.model.forward_intermediates(
            x,
            indices=list(self.layer_indices),
            norm=True,
            output_fmt="NCHW",
            intermediates_only=True,
        )


class HierarchicalBackbone(Backbone):
    """Multi-stage network (ConvNeXt, ResNet, EfficientNet, ...) via timm ``features_only``."""

    single_scale = False

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        info = model.feature_info
        self.channels = tuple(int(c) for c in info.channels())
        self.reductions = tuple(int(r) for r in info.reduction())
        self.input_multiple = (max(self.reductions),) * 2
        self._channels_last_output = str(getattr(model, "output_fmt", "NCHW")) == "NHWC"

    def freeze_stages(self, n: int) -> None:
        """No gradients for the stem and the first ``n`` levels of timm's ``feature_info``, and
        their batch norms kept in eval mode, so they stay the pretrained feature extractor.

        The early levels run at the highest resolution, so their backward pass is the costly
        one: freezing the stem and two levels of EfficientNet-Lite0 (everything at stride <= 4)
        made a CPU training step about 30% faster. Parameters are frozen in registration
        order, which for timm's feature models is the order of the forward pass.
        """
        info = self.model.feature_info
        if not 0 <= n <= len(info):
            raise ValueError(
                f"model.frozen_stages={n}: this backbone has {len(info)} feature levels"
            )
        if n == 0:
            return
        level = info.module_name(n - 1)
        prefixes = (level + ".", level.replace(".", "_") + ".")  # FeatureListNet joins with _
        names = [name for name, _ in self.model.named_parameters()]
        last = max(i for i, name in enumerate(names) if name.startswith(prefixes))
        frozen = set(names[: last + 1])
        for name, param in self.model.named_parameters():
            if name in frozen:
                param.requires_grad_(False)
        self._frozen_norms = [
            module
            for module in self.model.modules()
            if isinstance(module, nn.modules.batchnorm._BatchNorm)
            and not any(p.requires_grad for p in module.parameters())
        ]

    def train(self, mode: bool = True):
        super().train(mode)
        for module in getattr(self, "_frozen_norms", ()):
            module.eval()  # frozen stages keep their pretrained statistics
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = self.model(x)
        if self._channels_last_output:
            maps = [m.permute(0, 3, 1, 2) for m in maps]
        return list(maps)


@dataclass(frozen=True)
class BackboneFamily:
    """How to recognise a timm model (``matches``) and wrap it (``build``)."""

    name: str
    matches: Callable[[nn.Module], bool]
    build: Callable[[ModelConfig, nn.Module], Backbone]


_FAMILIES: list[BackboneFamily] = []


def register_family(name: str, matches: Callable[[nn.Module], bool]):
    """Decorator adding a family; families are tried in registration order."""

    def decorator(build: Callable[[ModelConfig, nn.Module], Backbone]):
        _FAMILIES.append(BackboneFamily(name, matches, build))
        return build

    return decorator


def _reductions(model: nn.Module) -> list[int]:
    info = getattr(model, "feature_info", None)
    if not info:
        return []
    return [int(entry["reduction"]) for entry in info]


def _is_plain_vit(model: nn.Module) -> bool:
    return (
        hasattr(model, "patch_embed")
        and isinstance(getattr(model, "blocks", None), nn.Sequential | nn.ModuleList)
        and hasattr(model, "forward_intermediates")
        and len(set(_reductions(model))) == 1
    )


def _is_hierarchical(model: nn.Module) -> bool:
    reductions = _reductions(model)
    return len(reductions) >= 4 and len(set(reductions[-4:])) == 4


def default_layer_indices(depth: int) -> tuple[int, int, int, int]:
    """Four blocks evenly spaced, the last one last (12 blocks -> 2, 5, 8, 11)."""
    if depth < 4:
        raise ValueError(f"a ViT backbone needs at least 4 blocks to feed the head, got {depth}")
    return tuple(math.ceil((k + 1) * depth / 4) - 1 for k in range(4))  # type: ignore[return-value]


def _pretrained_kwargs(config: ModelConfig) -> dict[str, Any]:
    """timm arguments that load ``config.pretrained`` from disk and never touch the network."""
    if config.pretrained is None:
        return {"pretrained": False}
    path = resolve_weights_file(config.pretrained, config.backbone)
    # Clearing every remote location makes a download impossible even if timm's rules change.
    overlay = {"file": str(path), "hf_hub_id": None, "url": None, "source": None}
    return {"pretrained": True, "pretrained_cfg_overlay": overlay}


def _create(config: ModelConfig, **kwargs: Any) -> nn.Module:
    kwargs.update(config.backbone_kwargs)
    try:
        kwargs.update(_pretrained_kwargs(config))
    except WeightsError as error:
        raise WeightsError(f"{error} (model.pretrained)") from None
    if config.drop_path_rate > 0:
        kwargs["drop_path_rate"] = config.drop_path_rate
    try:
        return _timm().create_model(config.backbone, **kwargs)
    except TypeError as error:
        raise ValueError(
            f"timm rejected the arguments for backbone {config.backbone!r}: {error}"
        ) from error
    except (RuntimeError, KeyError, OSError, ValueError, EOFError, SafetensorError) as error:
        if config.pretrained is None:
            raise
        raise ValueError(
            f"could not load pretrained weights {config.pretrained} into backbone "
            f"{config.backbone!r}: {error}"
        ) from error


@register_family("vit", _is_plain_vit)
def _build_vit(config: ModelConfig, probe: nn.Module) -> Backbone:
    indices = config.layer_indices or default_layer_indices(len(probe.blocks))
    kwargs: dict[str, Any] = {
        "num_classes": 0,
        "img_size": config.img_size,
        "dynamic_img_size": True,
    }
    if config.patch_size is not None:
        kwargs["patch_size"] = config.patch_size
    return ViTBackbone(_create(config, **kwargs), indices)


@register_family("hierarchical", _is_hierarchical)
def _build_hierarchical(config: ModelConfig, probe: nn.Module) -> Backbone:
    if config.patch_size is not None:
        raise ValueError(f"patch_size only applies to ViT backbones, not {config.backbone!r}")
    count = len(probe.feature_info)
    out_indices = tuple(range(count - 4, count))
    return HierarchicalBackbone(_create(config, features_only=True, out_indices=out_indices))


def probe_backbone(name: str, kwargs: dict[str, Any] | None = None) -> nn.Module:
    """Instantiate ``name`` without weights (meta device) so its structure can be inspected."""
    if not _timm().is_model(name):
        raise ValueError(f"unknown timm backbone {name!r} (ModelConfig.backbone)")
    kwargs = dict(kwargs or {})
    try:
        with torch.device("meta"):
            return _timm().create_model(name, pretrained=False, **kwargs)
    except (TypeError, ValueError, AssertionError) as error:
        raise ValueError(f"timm rejected backbone_kwargs {kwargs} for {name!r}: {error}") from error
    except Exception:  # noqa: BLE001 - a model reading tensor values at init cannot be on meta
        return _timm().create_model(name, pretrained=False, **kwargs)


def _match(name: str, probe: nn.Module) -> BackboneFamily:
    for family in _FAMILIES:
        if family.matches(probe):
            return family
    raise ValueError(
        f"backbone {name!r} ({type(probe).__name__}) is neither a plain ViT nor a network with "
        "four multi-scale feature stages; supported families: "
        + ", ".join(f.name for f in _FAMILIES)
    )


def build_backbone(config: ModelConfig) -> Backbone:
    """The backbone described by ``config``, with pretrained weights if a file is given."""
    probe = probe_backbone(config.backbone, config.backbone_kwargs)
    return _match(config.backbone, probe).build(config, probe)
