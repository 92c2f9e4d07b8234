"""Hugging Face depth-estimation models (Depth Anything V1/V2, DPT) as depth-distill models.

Many users already hold a strong teacher as a local Hugging Face folder (config.json, weights,
preprocessor_config.json). `TransformersDepthModel` wraps it behind the contract of
`DepthModel`: ``forward(image (B, 3, H, W) in [0, 1]) -> (B, H, W)`` non-negative float32
disparity at the input size, with ``config.img_size`` and ``input_multiple`` for
`depth_core.inference`. The folder's processor is followed as transformers follows it
(`depth_core.models.image_processing`: keep_aspect_ratio, ensure_multiple_of, resample, do_pad,
the bicubic way back), and metric depth is inverted to disparity, so `predict`, evaluation,
pseudo-labelling and voting get what transformers' depth-estimation pipeline gives.

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
from torch import nn

from depth_core.models.checkpoint import CheckpointError
from depth_core.models.image_processing import RESAMPLE_MODES, ImageProcessing

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
    img_size: int  # longer side of the processor's target size
    multiple: tuple[int, int]  # working height and width are multiples of these (patch size)
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    input_scale: float  # pixel value of white after the processor's rescaling (1.0 normally)
    processing: ImageProcessing  # the resize in and out
    source: str = "transformers"

    def as_metadata(self) -> dict[str, Any]:
        return asdict(self)


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


def _target_size(size: Any) -> tuple[int, int] | None:
    """(height, width) of an image processor's `size` entry; a lone edge means a square, which
    with keep_aspect_ratio brings the side nearest it to it."""
    if isinstance(size, (int, float)):
        return int(size), int(size)
    if isinstance(size, dict):
        if "height" in size and "width" in size:
            return int(size["height"]), int(size["width"])
        for key in ("shortest_edge", "longest_edge"):
            if key in size:
                return int(size[key]), int(size[key])
    return None


def _config_image_size(hf_config) -> int | None:
    for config in (hf_config, getattr(hf_config, "backbone_config", None)):
        value = getattr(config, "image_size", None) if config is not None else None
        if value is not None:
            return max(_pair(value))
    return None


def _resample_of(processor: dict[str, Any], folder: Path) -> str:
    code = processor.get("resample", 3)  # DPTImageProcessor's default: bicubic
    if code not in RESAMPLE_MODES:
        raise CheckpointError(
            folder,
            f"{PREPROCESSOR_FILE}: resample {code!r} is not supported "
            f"(supported: {sorted(RESAMPLE_MODES)} = {list(RESAMPLE_MODES.values())})",
        )
    return RESAMPLE_MODES[code]


def read_processing(folder: Path, hf_config) -> ImageProcessing:
    """The folder's resize in and out, read as DPTImageProcessor reads preprocessor_config.json;
    without that file, a square of the config's image_size, aspect kept, sides a multiple of
    the patch."""
    processor_file = folder / PREPROCESSOR_FILE
    if not processor_file.is_file():
        side = _config_image_size(hf_config) or DPT_DEFAULT_SIZE
        patch = max(patch_size_of(hf_config))
        return ImageProcessing("transformers", side, side, True, patch, "bicubic")
    processor = _read_json(processor_file, folder)
    target = _target_size(processor.get("size")) or (DPT_DEFAULT_SIZE, DPT_DEFAULT_SIZE)
    pad_divisor = None
    if processor.get("do_pad", False):
        pad_divisor = int(processor.get("size_divisor") or 0) or None
        if pad_divisor is None:
            raise CheckpointError(folder, f"{PREPROCESSOR_FILE}: do_pad needs a size_divisor")
    return ImageProcessing(
        style="transformers",
        height=target[0],
        width=target[1],
        keep_aspect_ratio=bool(processor.get("keep_aspect_ratio", False)),
        multiple=int(processor.get("ensure_multiple_of") or 1),
        resample=_resample_of(processor, folder),
        do_resize=bool(processor.get("do_resize", True)),
        pad_divisor=pad_divisor,
    )


def read_preprocessing(folder: Path, hf_config) -> TransformersModelConfig:
    """Working resolution and normalisation from preprocessor_config.json, else from the model
    config (image_size) and the DPT processor's defaults."""
    processor_file = folder / PREPROCESSOR_FILE
    processor = _read_json(processor_file, folder) if processor_file.is_file() else {}
    processing = read_processing(folder, hf_config)
    patch = patch_size_of(hf_config)
    multiple = (math.lcm(patch[0], processing.multiple), math.lcm(patch[1], processing.multiple))
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
        img_size=max(processing.height, processing.width, max(multiple)),
        multiple=multiple,
        image_mean=mean,  # type: ignore[arg-type]
        image_std=std,  # type: ignore[arg-type]
        input_scale=input_scale,
        processing=processing,
    )


class TransformersDepthModel(nn.Module):
    """A Hugging Face depth-estimation model behind DepthModel's contract.

    `processing` says how its authors resize: `depth_core.inference` resizes each uint8 image to
    `working_size` with `processing.prepare`, calls `predict_raw` and brings the raw output back
    with `processing.restore` before `to_disparity`, exactly as transformers' pipeline does.
    `forward` does the same for a float batch of any size (evaluation on dataset tensors): the
    network always runs at the processor's resolution, as it was trained to.
    """

    def __init__(self, model: nn.Module, config: TransformersModelConfig):
        super().__init__()
        self.model = model
        self.config = config
        self.processing = config.processing
        # Not persistent: constants derived from the folder's preprocessing.
        mean, std = torch.tensor(config.image_mean), torch.tensor(config.image_std)
        self.register_buffer("mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", std.view(1, 3, 1, 1), persistent=False)

    @property
    def input_multiple(self) -> tuple[int, int]:
        return self.config.multiple

    def working_size(self, height: int, width: int) -> tuple[int, int]:
        return self.processing.working_size(height, width)

    def predict_raw(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) in [0, 1] at the working size -> the network's own (B, h', w') output
        (metres for a metric model), at its output size (the padded size when padding)."""
        x = (x * self.config.input_scale - self.mean) / self.std
        return self.model(pixel_values=self.processing.pad(x)).predicted_depth.float()

    def to_disparity(self, raw: torch.Tensor) -> torch.Tensor:
        if self.config.depth_type == "metric":
            return 1.0 / raw.clamp(min=METRIC_MIN_DEPTH)
        return raw.clamp(min=0.0)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"image must be (B, 3, H, W), got shape {tuple(image.shape)}")
        size = tuple(image.shape[-2:])
        x = self.processing.resize_float(image, self.working_size(*size)).clamp(0.0, 1.0)
        return self.to_disparity(self.processing.restore(self.predict_raw(x), size))


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
