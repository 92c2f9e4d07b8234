"""DepthModel: a timm backbone and a DPT head mapping images in [0, 1] to disparity."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from depth_core.models.backbones import Backbone, build_backbone
from depth_core.models.config import ModelConfig
from depth_core.models.dpt_head import DPTHead
from depth_core.models.weights import input_normalization


class DepthModel(nn.Module):
    """``forward(image (B, 3, H, W) in [0, 1]) -> (B, H, W)`` non-negative float32 disparity.

    Any H, W is accepted: the normalised image is padded (edge replicate, bottom/right) to a
    multiple of the backbone's stride and the prediction is cropped back, so pixels are never
    resampled. Under autocast the network runs in low precision and the output is float32.
    """

    def __init__(self, config: ModelConfig, backbone: Backbone, head: DPTHead):
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.head = head
        if config.input_mean is None or config.input_std is None:
            raise ValueError("DepthModel needs a config with resolved input_mean / input_std")
        # Not persistent: the values travel in the config, checkpoints hold only learned weights.
        mean = torch.tensor(config.input_mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(config.input_std, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    @property
    def input_multiple(self) -> tuple[int, int]:
        """The backbone needs input height and width to be multiples of these."""
        return self.backbone.input_multiple

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"image must be (B, 3, H, W), got shape {tuple(image.shape)}")
        height, width = image.shape[-2:]
        x = (image - self.mean) / self.std
        mh, mw = self.input_multiple
        pad_h, pad_w = -height % mh, -width % mw
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        disparity = self.head(self.backbone(x), size=x.shape[-2:])
        return disparity[:, 0, :height, :width].float()


def build_model(
    config: ModelConfig | Mapping[str, Any], load_pretrained: bool = True
) -> DepthModel:
    """A fresh DepthModel; ``load_pretrained=False`` ignores ``config.pretrained`` (checkpoints)."""
    if not isinstance(config, ModelConfig):
        config = ModelConfig.model_validate(dict(config))
    config = with_resolved_normalization(config)
    backbone_config = config if load_pretrained else config.model_copy(update={"pretrained": None})
    backbone = build_backbone(backbone_config)
    backbone.freeze_stages(config.frozen_stages)
    head = DPTHead(
        in_channels=backbone.channels,
        features=config.features,
        out_channels=config.out_channels,
        single_scale=backbone.single_scale,
        output_activation=config.output_activation,
    )
    return DepthModel(config, backbone, head)


def with_resolved_normalization(config: ModelConfig) -> ModelConfig:
    """``config`` with explicit input statistics, so its checkpoint predicts the same anywhere."""
    if config.input_mean is not None and config.input_std is not None:
        return config
    mean, std = input_normalization(config.backbone, config.pretrained)
    return config.model_copy(
        update={"input_mean": config.input_mean or mean, "input_std": config.input_std or std}
    )
