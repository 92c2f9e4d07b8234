"""Validated description of a depth model: everything needed to rebuild it from a checkpoint."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Reassemble widths relative to the fusion width; with features=64 this gives Depth Anything V2
# ViT-S's (48, 96, 192, 384).
_OUT_CHANNEL_RATIOS = (0.75, 1.5, 3.0, 6.0)


# timm arguments the model builder sets itself (from the fields of ModelConfig).
_MANAGED_KWARGS = {
    "pretrained",
    "pretrained_cfg",
    "pretrained_cfg_overlay",
    "checkpoint_path",
    "features_only",
    "out_indices",
    "num_classes",
    "img_size",
    "dynamic_img_size",
    "patch_size",
    "drop_path_rate",
}


# Checkpoints written before `output_activation` existed have the ReLU head.
LEGACY_OUTPUT_ACTIVATION = "relu"


def default_out_channels(features: int) -> tuple[int, int, int, int]:
    """Reassemble widths derived from the fusion width (finest level first)."""
    return tuple(max(1, round(features * ratio)) for ratio in _OUT_CHANNEL_RATIOS)  # type: ignore[return-value]


class ModelConfig(BaseModel):
    """A timm backbone plus a DPT head; stored as JSON inside every checkpoint.

    ``pretrained`` is a local weights file (.safetensors, .pth or .pt, timm's layout) or a
    packaged source ``package:NAME`` (see ``depth_core.models.weights``), for the backbone only;
    weights are never downloaded. ``input_mean`` / ``input_std`` default to what the weights were
    trained with and are stored resolved in every checkpoint. ``layer_indices`` and
    ``patch_size`` only apply to plain ViT backbones; ``backbone_kwargs`` shrinks or reshapes any timm model (depth, width, heads).
    """

    model_config = ConfigDict(extra="forbid")

    backbone: str = Field(min_length=1, description="timm model name, e.g. vit_small_patch16_224")
    features: int = Field(default=64, ge=4, description="DPT fusion width")
    out_channels: tuple[int, int, int, int] | None = Field(
        default=None, description="reassemble widths, finest level first; derived from features"
    )
    img_size: int = Field(default=128, ge=16, description="training resolution (longer side)")
    layer_indices: tuple[int, int, int, int] | None = Field(
        default=None, description="ViT blocks feeding the head; evenly spaced ending at the last"
    )
    patch_size: int | None = Field(
        default=None, ge=1, description="override the ViT patch size of the timm model"
    )
    backbone_kwargs: dict[str, int | float | bool | str | tuple[int, ...]] = Field(
        default_factory=dict,
        description="extra timm constructor arguments, e.g. {depth: 4, embed_dim: 96}",
    )
    pretrained: str | None = Field(
        default=None,
        description="backbone weights: a local file, or package:NAME (e.g. package:efficientnet_lite0)",
    )
    input_mean: tuple[float, float, float] | None = Field(
        default=None,
        description="input normalisation mean; null = the backbone's pretrained config",
    )
    input_std: tuple[float, float, float] | None = Field(
        default=None, description="input normalisation std; null = the backbone's pretrained config"
    )
    drop_path_rate: float = Field(default=0.0, ge=0.0, lt=1.0)
    frozen_stages: int = Field(
        default=0,
        ge=0,
        description="the stem and this many feature levels of a pretrained hierarchical "
        "encoder keep their weights and batch-norm statistics (no gradients: faster steps)",
    )
    output_activation: Literal["softplus", "relu"] = Field(
        default="softplus",
        description="the head's last activation, which keeps disparity non-negative",
    )

    @field_validator("backbone")
    @classmethod
    def _local_names_only(cls, name: str) -> str:
        if ":" in name:
            raise ValueError(
                f"backbone {name!r}: hub prefixes are not supported, use a plain timm model name "
                "and point `pretrained` at a local weights file"
            )
        import difflib

        import timm

        if not timm.is_model(name):
            close = difflib.get_close_matches(name, timm.list_models(), n=3)
            hint = f" (close: {', '.join(close)})" if close else ""
            raise ValueError(f"backbone {name!r} is not a timm model{hint}")
        return name

    @field_validator("pretrained")
    @classmethod
    def _known_source(cls, pretrained: str | None) -> str | None:
        from depth_core.models.weights import PACKAGE_PREFIX, packaged_source

        if pretrained is not None and pretrained.startswith(PACKAGE_PREFIX):
            packaged_source(pretrained[len(PACKAGE_PREFIX) :])  # unknown names fail here, early
        return pretrained

    @model_validator(mode="after")
    def _frozen_needs_weights(self):
        if self.frozen_stages and self.pretrained is None:
            raise ValueError(
                f"frozen_stages={self.frozen_stages} needs pretrained weights: frozen random "
                "layers learn nothing (set frozen_stages: 0 to train from scratch)"
            )
        return self

    @field_validator("input_std")
    @classmethod
    def _positive_std(cls, std: tuple[float, float, float] | None):
        if std is not None and min(std) <= 0:
            raise ValueError(f"input_std must be positive, got {std}")
        return std

    @field_validator("backbone_kwargs")
    @classmethod
    def _no_managed_kwargs(cls, kwargs: dict[str, int | float | bool | str | tuple[int, ...]]):
        clash = sorted(set(kwargs) & _MANAGED_KWARGS)
        if clash:
            raise ValueError(f"backbone_kwargs may not set {clash}: they are set from other fields")
        return kwargs

    @field_validator("out_channels")
    @classmethod
    def _positive_widths(cls, widths: tuple[int, int, int, int] | None):
        if widths is not None and min(widths) < 1:
            raise ValueError(f"out_channels must be positive, got {widths}")
        return widths

    @field_validator("layer_indices")
    @classmethod
    def _increasing_indices(cls, indices: tuple[int, int, int, int] | None):
        if indices is not None and (min(indices) < 0 or list(indices) != sorted(set(indices))):
            raise ValueError(
                f"layer_indices must be 4 distinct increasing block indices, got {indices}"
            )
        return indices

    @model_validator(mode="after")
    def _fill_out_channels(self) -> ModelConfig:
        if self.out_channels is None:
            self.out_channels = default_out_channels(self.features)
        return self
