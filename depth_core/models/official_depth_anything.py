"""The authors' Depth Anything V1 / V2 ``.pth`` files, run as their ``infer_image`` runs them.

Their release pages ship plain state dicts (``pretrained.*``: the DINOv2 encoder,
``depth_head.*``: the DPT head) for ViT-S/B/L, and V2's metric fine-tunes (Hypersim, max depth
20 m; Virtual KITTI, 80 m). Each is read with ``weights_only=True``, its size recognised from
the tensors (width, depth, head features), every tensor renamed onto transformers'
`DepthAnythingForDepthEstimation` (the same network, built offline from a `DepthAnythingConfig`)
with every shape checked and nothing left over, and wrapped as a `TransformersDepthModel` with
the authors' processing: short side to 518, sides multiples of 14, ImageNet mean/std, bicubic in
and bilinear (align_corners) out.

Neither the version nor metric-ness is in the tensors (V1 and V2 differ in which encoder layers
the head reads; a metric head only in its last activation), so the released file names say it:
``depth_anything_vitl14.pth`` is V1, ``depth_anything_v2_vits.pth`` V2, and
``depth_anything_v2_metric_hypersim_vitl.pth`` / ``..._metric_vkitti_...`` the metric ones.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from depth_core.models.checkpoint import CheckpointError
from depth_core.models.image_processing import ImageProcessing
from depth_core.models.transformers_teacher import (
    TransformersDepthModel,
    TransformersModelConfig,
    load_pickled_weights,
)
from depth_core.models.weights import IMAGENET_MEAN, IMAGENET_STD

OFFICIAL_SUFFIXES = (".pth", ".pt")
OFFICIAL_SIZE = 518
PATCH = 14
METRIC_MAX_DEPTH = {"hypersim": 20.0, "vkitti": 80.0}


@dataclass(frozen=True)
class Encoder:
    """One DINOv2 size as the authors configure it."""

    name: str
    width: int
    layers: int
    heads: int
    features: int  # the head's fusion width
    out_channels: tuple[int, int, int, int]
    v2_layers: tuple[int, int, int, int]  # the 0-based blocks V2's head reads (V1: the last 4)


ENCODERS = {
    e.width: e
    for e in (
        Encoder("vits", 384, 12, 6, 64, (48, 96, 192, 384), (2, 5, 8, 11)),
        Encoder("vitb", 768, 12, 12, 128, (96, 192, 384, 768), (2, 5, 8, 11)),
        Encoder("vitl", 1024, 24, 16, 256, (256, 512, 1024, 1024), (4, 11, 17, 23)),
    )
}

BY_NAME = {e.name: e for e in ENCODERS.values()}


@dataclass(frozen=True)
class Variant:
    """What a file holds: its encoder, its version, and the metric range (None: relative)."""

    encoder: Encoder
    version: int
    max_depth: float | None

    def out_indices(self) -> list[int]:
        """transformers' 1-based hidden states the head reads."""
        if self.version == 1:
            return list(range(self.encoder.layers - 3, self.encoder.layers + 1))
        return [i + 1 for i in self.encoder.v2_layers]


def is_official_checkpoint(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in OFFICIAL_SUFFIXES


def read_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The file's tensors (tensors only: ``weights_only=True``), unwrapped from a "model" or
    "state_dict" entry and a DDP "module." prefix."""
    path = Path(path)
    state = load_pickled_weights(path)
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(path, "not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _shape(state: dict[str, torch.Tensor], key: str, path: Path) -> tuple[int, ...]:
    if key not in state:
        raise CheckpointError(
            path, f"no tensor {key!r}: not a Depth Anything checkpoint (pretrained.*, depth_head.*)"
        )
    return tuple(state[key].shape)


def detect_variant(state: dict[str, torch.Tensor], path: str | os.PathLike) -> Variant:
    """The encoder from the tensors, the version and metric range from the released file name."""
    path = Path(path)
    width = _shape(state, "pretrained.cls_token", path)[-1]
    encoder = ENCODERS.get(width)
    if encoder is None:
        raise CheckpointError(
            path,
            f"encoder width {width} is not ViT-S/B/L ({sorted(ENCODERS)}; ViT-G is not supported)",
        )
    layers = 1 + max(
        (int(m.group(1)) for k in state if (m := re.match(r"pretrained\.blocks\.(\d+)\.", k))),
        default=-1,
    )
    features = _shape(state, "depth_head.scratch.layer1_rn.weight", path)[0]
    out_channels = tuple(
        _shape(state, f"depth_head.projects.{i}.weight", path)[0] for i in range(4)
    )
    found = f"width {width}, {layers} blocks, head features {features}, projections {out_channels}"
    expected = (encoder.layers, encoder.features, encoder.out_channels)
    if (layers, features, out_channels) != expected:
        raise CheckpointError(
            path,
            f"tensors ({found}) do not fit Depth Anything {encoder.name} (expected "
            f"{encoder.layers} blocks, head features {encoder.features}, projections "
            f"{encoder.out_channels})",
        )
    name = path.name.lower()
    version = 2 if "v2" in name else 1
    max_depth = next((d for key, d in METRIC_MAX_DEPTH.items() if key in name), None)
    if max_depth is not None and version == 1:
        raise CheckpointError(path, "metric V1 checkpoints (ZoeDepth heads) are not supported")
    return Variant(encoder, version, max_depth)


def transformers_config(variant: Variant):
    """The `DepthAnythingConfig` of the same network (built offline; random weights)."""
    from transformers import DepthAnythingConfig, Dinov2Config

    encoder = variant.encoder
    backbone = Dinov2Config(
        hidden_size=encoder.width,
        num_hidden_layers=encoder.layers,
        num_attention_heads=encoder.heads,
        mlp_ratio=4,
        patch_size=PATCH,
        image_size=OFFICIAL_SIZE,
        out_indices=variant.out_indices(),
        apply_layernorm=True,
        reshape_hidden_states=False,
        layerscale_value=1.0,
    )
    return DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=encoder.width,
        patch_size=PATCH,
        neck_hidden_sizes=list(encoder.out_channels),
        fusion_hidden_size=encoder.features,
        head_hidden_size=32,
        depth_estimation_type="relative" if variant.max_depth is None else "metric",
        max_depth=int(variant.max_depth or 1),
    )


_BLOCK = {
    "norm1": "norm1",
    "attn.proj": "attention.o_proj",
    "ls1.gamma": "layer_scale1.lambda1",
    "norm2": "norm2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
    "ls2.gamma": "layer_scale2.lambda1",
}
_TOP = {
    "pretrained.cls_token": "backbone.embeddings.cls_token",
    "pretrained.mask_token": "backbone.embeddings.mask_token",
    "pretrained.pos_embed": "backbone.embeddings.position_embeddings",
    "pretrained.patch_embed.proj": "backbone.embeddings.patch_embeddings.projection",
    "pretrained.norm": "backbone.layernorm",
    "depth_head.scratch.output_conv1": "head.conv1",
    "depth_head.scratch.output_conv2.0": "head.conv2",
    "depth_head.scratch.output_conv2.2": "head.conv3",
}
_REFINENET = {
    "out_conv": "projection",
    "resConfUnit1.conv1": "residual_layer1.convolution1",
    "resConfUnit1.conv2": "residual_layer1.convolution2",
    "resConfUnit2.conv1": "residual_layer2.convolution1",
    "resConfUnit2.conv2": "residual_layer2.convolution2",
}


def official_name(name: str) -> str | None:
    """transformers' name of one authors' tensor (None for the fused qkv, split separately)."""
    stem, _, leaf = name.rpartition(".")
    for ours, theirs in _TOP.items():
        if name == ours:
            return theirs
        if stem == ours:
            return f"{theirs}.{leaf}"
    if m := re.fullmatch(r"pretrained\.blocks\.(\d+)\.(.+)", name):
        block, rest = m.groups()
        if rest.startswith("attn.qkv."):
            return None
        for theirs_rest, hf in _BLOCK.items():
            if rest == theirs_rest or rest.startswith(theirs_rest + "."):
                return f"backbone.encoder.layer.{block}.{hf}{rest[len(theirs_rest) :]}"
    if m := re.fullmatch(r"depth_head\.projects\.(\d)\.(weight|bias)", name):
        return f"neck.reassemble_stage.layers.{m[1]}.projection.{m[2]}"
    if m := re.fullmatch(r"depth_head\.resize_layers\.([013])\.(weight|bias)", name):
        return f"neck.reassemble_stage.layers.{m[1]}.resize.{m[2]}"
    if m := re.fullmatch(r"depth_head\.scratch\.layer([1-4])_rn\.weight", name):
        return f"neck.convs.{int(m[1]) - 1}.weight"
    m = re.fullmatch(r"depth_head\.scratch\.refinenet([1-4])\.(.+)\.(weight|bias)", name)
    if m and m[2] in _REFINENET:  # refinenet4 fuses the deepest features: transformers' layer 0
        return f"neck.fusion_stage.layers.{4 - int(m[1])}.{_REFINENET[m[2]]}.{m[3]}"
    raise KeyError(name)


def to_transformers_state(
    state: dict[str, torch.Tensor], path: str | os.PathLike
) -> dict[str, torch.Tensor]:
    """The authors' tensors under transformers' names (fused qkv split into query, key, value)."""
    renamed: dict[str, torch.Tensor] = {}
    unknown = []
    for name, tensor in state.items():
        try:
            target = official_name(name)
        except KeyError:
            unknown.append(name)
            continue
        if target is not None:
            renamed[target] = tensor
            continue
        block, leaf = re.fullmatch(r"pretrained\.blocks\.(\d+)\.attn\.qkv\.(\w+)", name).groups()
        for part, chunk in zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3)):
            renamed[f"backbone.encoder.layer.{block}.attention.{part}.{leaf}"] = chunk
    if unknown:
        raise CheckpointError(
            path, f"{len(unknown)} tensors belong to no Depth Anything layer (e.g. {unknown[:3]})"
        )
    return renamed


def fitted_state(
    state: dict[str, torch.Tensor], variant: Variant, model: torch.nn.Module, path: Path
) -> dict[str, torch.Tensor]:
    """`state` renamed onto `model` (built on the meta device), every tensor of both accounted
    for and every shape checked; the error names what does not fit."""
    renamed = to_transformers_state(state, path)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(renamed))
    extra = sorted(set(renamed) - set(expected))
    wrong = [
        f"{k} {tuple(renamed[k].shape)} != {expected[k]}"
        for k in sorted(set(expected) & set(renamed))
        if tuple(renamed[k].shape) != expected[k]
    ]
    if missing or extra or wrong:
        raise CheckpointError(
            path,
            f"does not fit Depth Anything V{variant.version} {variant.encoder.name}: "
            f"missing {missing[:3]}, unexpected {extra[:3]}, wrong shapes {wrong[:3]}",
        )
    return renamed


def official_processing() -> ImageProcessing:
    return ImageProcessing("official", OFFICIAL_SIZE, OFFICIAL_SIZE, True, PATCH, "bicubic")


def run_as_authors(model: torch.nn.Module, variant: Variant, folder: str) -> TransformersDepthModel:
    """A transformers Depth Anything model wrapped to run as the authors' `infer_image` runs
    it: the short side at 518, multiples of 14, ImageNet mean/std, bilinear back."""
    config = TransformersModelConfig(
        folder=folder,
        model_type="depth_anything",
        depth_type="relative" if variant.max_depth is None else "metric",
        img_size=OFFICIAL_SIZE,
        multiple=(PATCH, PATCH),
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
        input_scale=1.0,
        processing=official_processing(),
        source="official",
    )
    return TransformersDepthModel(model, config)


def load_official_model(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[Any, dict[str, Any]]:
    """An authors' .pth file as a `TransformersDepthModel` run their way, with its metadata."""
    from transformers import DepthAnythingForDepthEstimation

    path = Path(path)
    state = read_state(path)
    variant = detect_variant(state, path)
    with torch.device("meta"):
        model = DepthAnythingForDepthEstimation(transformers_config(variant))
    model.load_state_dict(fitted_state(state, variant, model, path), assign=True)
    model = model.float().eval()
    wrapped = run_as_authors(model, variant, str(path)).to(torch.device(map_location)).eval()
    described = {
        **wrapped.config.as_metadata(),
        "encoder": variant.encoder.name,
        "version": variant.version,
        "max_depth": variant.max_depth,
    }
    return wrapped, described
