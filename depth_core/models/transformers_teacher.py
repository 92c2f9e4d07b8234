"""Hugging Face depth-estimation models (Depth Anything V1/V2, DPT) as depth-distill models.

Many users already hold a strong teacher as a local Hugging Face folder (config.json, weights,
preprocessor_config.json). `TransformersDepthModel` wraps it behind the contract of
`DepthModel`: ``forward(image (B, 3, H, W) in [0, 1]) -> (B, H, W)`` non-negative float32
disparity at the input size, with ``config.img_size`` and ``input_multiple`` for
`depth_core.inference`. The folder's preprocessing (target size, size multiple, mean/std) is
applied inside forward, and metric depth is inverted to disparity, so pseudo-labelling,
evaluation and voting treat it like any trained model.

`transformers` is imported only when a folder is loaded; checking a folder reads JSON only.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from depth_core.models.checkpoint import CheckpointError
from depth_core.models.input_size import inference_size

SUPPORTED_MODEL_TYPES = ("depth_anything", "dpt")
CONFIG_FILE = "config.json"
PREPROCESSOR_FILE = "preprocessor_config.json"

# DPTImageProcessor's defaults, used when a folder has no preprocessor_config.json (or lacks a key).
DPT_DEFAULT_SIZE = 384
DPT_DEFAULT_MEAN = (0.5, 0.5, 0.5)
DPT_DEFAULT_STD = (0.5, 0.5, 0.5)

# Metric heads output metres; nothing is nearer than a millimetre, so 1 / depth stays finite.
METRIC_MIN_DEPTH = 1e-3

DepthType = Literal["relative", "metric"]


@dataclass(frozen=True)
class TransformersModelConfig:
    """What `depth_core.inference` and the pipeline read from a wrapped Hugging Face model."""

    folder: str
    model_type: str
    depth_type: DepthType
    img_size: int  # longer side of the working resolution (the processor's target size)
    multiple: tuple[int, int]  # working height and width are multiples of these (patch size)
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    input_scale: float  # pixel value of white after the processor's rescaling (1.0 normally)

    def as_metadata(self) -> dict[str, Any]:
        return {"source": "transformers", **asdict(self)}


def _read_json(path: Path, folder: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(folder, f"{path.name} is not readable JSON ({error})") from error
    if not isinstance(data, dict):
        raise CheckpointError(folder, f"{path.name} is not a JSON object")
    return data


def check_transformers_folder(folder: str | os.PathLike) -> dict[str, Any]:
    """The folder's config.json if it describes a supported depth-estimation model.

    Reads JSON only (no transformers import), so params validation can call it cheaply.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(folder, "not a folder (a Hugging Face model folder is expected)")
    config_file = folder / CONFIG_FILE
    if not config_file.is_file():
        raise CheckpointError(
            folder,
            f"folder without {CONFIG_FILE}: not a Hugging Face model folder "
            "(expected a depth-distill .safetensors file or a folder with config.json)",
        )
    config = _read_json(config_file, folder)
    model_type = config.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise CheckpointError(
            folder,
            f"model_type {model_type!r} is not a supported depth-estimation model "
            f"(supported: {', '.join(SUPPORTED_MODEL_TYPES)})",
        )
    architectures = config.get("architectures") or []
    if architectures and not any(str(a).endswith("ForDepthEstimation") for a in architectures):
        raise CheckpointError(
            folder,
            f"not a depth-estimation model (architectures {architectures}; "
            "expected ...ForDepthEstimation)",
        )
    return config


def _pair(value: int | tuple | list) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[-1])
    return int(value), int(value)


def patch_size_of(hf_config) -> tuple[int, int]:
    """The stride the backbone tokenises with: Depth Anything's `patch_size`; DPT's ViT patch,
    or its backbone's for a DINOv2-backed DPT."""
    backbone = getattr(hf_config, "backbone_config", None)
    if (
        hf_config.model_type == "dpt"
        and backbone is not None
        and not getattr(hf_config, "is_hybrid", False)
    ):
        return _pair(backbone.patch_size)
    return _pair(hf_config.patch_size)


def depth_type_of(hf_config) -> DepthType:
    """Relative (disparity-like) or metric (metres) output, from the model's config.

    Depth Anything says so in `depth_estimation_type`; an explicit `depth_estimation_type` in
    any config.json wins. DPT releases trained with MiDaS predict relative inverse depth; the
    DINOv2-backed DPT releases (NYU / KITTI heads) predict metric depth.
    """
    explicit = getattr(hf_config, "depth_estimation_type", None)
    if explicit is not None:
        if explicit not in ("relative", "metric"):
            raise ValueError(f"depth_estimation_type must be relative or metric, got {explicit!r}")
        return explicit
    backbone = getattr(hf_config, "backbone_config", None)
    if hf_config.model_type == "dpt" and getattr(backbone, "model_type", None) == "dinov2":
        return "metric"
    return "relative"


def _size_of(size: Any) -> int | None:
    """The longer target side of an image processor's `size` entry."""
    if isinstance(size, (int, float)):
        return int(size)
    if isinstance(size, dict):
        if "height" in size and "width" in size:
            return int(max(size["height"], size["width"]))
        for key in ("longest_edge", "shortest_edge"):
            if key in size:
                return int(size[key])
    return None


def _config_image_size(hf_config) -> int | None:
    for config in (hf_config, getattr(hf_config, "backbone_config", None)):
        value = getattr(config, "image_size", None) if config is not None else None
        if value is not None:
            return max(_pair(value))
    return None


def read_preprocessing(folder: Path, hf_config) -> TransformersModelConfig:
    """Working resolution and normalisation from preprocessor_config.json, else from the model
    config (image_size) and the DPT processor's defaults."""
    processor_file = folder / PREPROCESSOR_FILE
    processor = _read_json(processor_file, folder) if processor_file.is_file() else {}
    patch = patch_size_of(hf_config)
    ensure = int(processor.get("ensure_multiple_of") or 1)
    multiple = (math.lcm(patch[0], ensure), math.lcm(patch[1], ensure))
    img_size = _size_of(processor.get("size")) or _config_image_size(hf_config) or DPT_DEFAULT_SIZE
    if processor.get("do_normalize", True):
        mean = tuple(float(v) for v in processor.get("image_mean") or DPT_DEFAULT_MEAN)
        std = tuple(float(v) for v in processor.get("image_std") or DPT_DEFAULT_STD)
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    input_scale = (
        255.0 * float(processor.get("rescale_factor", 1 / 255))
        if processor.get("do_rescale", True)
        else 255.0
    )
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise CheckpointError(folder, f"{PREPROCESSOR_FILE}: need 3 means and 3 positive stds")
    return TransformersModelConfig(
        folder=str(folder),
        model_type=hf_config.model_type,
        depth_type=depth_type_of(hf_config),
        img_size=max(img_size, max(multiple)),
        multiple=multiple,
        image_mean=mean,  # type: ignore[arg-type]
        image_std=std,  # type: ignore[arg-type]
        input_scale=input_scale,
    )


class TransformersDepthModel(nn.Module):
    """A Hugging Face depth-estimation model behind DepthModel's contract.

    The input is resized (bilinear, antialiased) to the working resolution, where the longer
    side is ``config.img_size`` and both sides are multiples of the patch size, exactly as
    `depth_core.inference` prepares images (so after it this resize is a no-op); then it is
    normalised, predicted, metric depth is inverted, and the result is resized back to the
    input size. The network always runs at the processor's resolution, as it was trained to.
    """

    def __init__(self, model: nn.Module, config: TransformersModelConfig):
        super().__init__()
        self.model = model
        self.config = config
        # Not persistent: constants derived from the folder's preprocessing.
        mean, std = torch.tensor(config.image_mean), torch.tensor(config.image_std)
        self.register_buffer("mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", std.view(1, 3, 1, 1), persistent=False)

    @property
    def input_multiple(self) -> tuple[int, int]:
        return self.config.multiple

    def working_size(self, height: int, width: int) -> tuple[int, int]:
        return inference_size(height, width, self.config.img_size, self.config.multiple)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"image must be (B, 3, H, W), got shape {tuple(image.shape)}")
        size = tuple(image.shape[-2:])
        work = self.working_size(*size)
        x = image
        if size != work:
            x = F.interpolate(x, size=work, mode="bilinear", antialias=True, align_corners=False)
        x = (x * self.config.input_scale - self.mean) / self.std
        out = self.model(pixel_values=x).predicted_depth.float()
        if self.config.depth_type == "metric":
            out = 1.0 / out.clamp(min=METRIC_MIN_DEPTH)
        else:
            out = out.clamp(min=0.0)
        if tuple(out.shape[-2:]) != size:
            out = F.interpolate(out[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
        return out


def load_transformers_model(
    folder: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[TransformersDepthModel, dict[str, Any]]:
    """Load a local Hugging Face depth-estimation folder (never the hub) as a wrapped model."""
    folder = Path(folder)
    check_transformers_folder(folder)
    try:
        from transformers import AutoModelForDepthEstimation
    except ImportError as error:
        raise CheckpointError(
            folder, "loading a Hugging Face model folder needs the `transformers` package"
        ) from error
    try:
        model, info = AutoModelForDepthEstimation.from_pretrained(
            folder, local_files_only=True, dtype=torch.float32, output_loading_info=True
        )
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as error:
        raise CheckpointError(
            folder, f"not a loadable Hugging Face depth-estimation model ({error})"
        ) from error
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        raise CheckpointError(
            folder, f"weights missing for {len(missing)} tensors (e.g. {missing[:3]})"
        )
    try:
        config = read_preprocessing(folder, model.config)
    except CheckpointError:
        raise
    except ValueError as error:
        raise CheckpointError(folder, str(error)) from error
    wrapped = TransformersDepthModel(model, config).to(torch.device(map_location)).eval()
    return wrapped, config.as_metadata()
