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
import pickle
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from depth_core.models.checkpoint import CheckpointError
from depth_core.models.image_processing import RESAMPLE_MODES, ImageProcessing

# The model class transformers builds for each supported config.json model_type.
ARCHITECTURES = {
    "depth_anything": "DepthAnythingForDepthEstimation",
    "dpt": "DPTForDepthEstimation",
}
SUPPORTED_MODEL_TYPES = tuple(ARCHITECTURES)
CONFIG_FILE = "config.json"
PREPROCESSOR_FILE = "preprocessor_config.json"
# The processors these models ship (torchvision and PIL backends, and the older "Fast" name).
PROCESSOR_TYPES = ("DPTImageProcessor", "DPTImageProcessorFast", "DPTImageProcessorPil")
PROCESSOR_FLAGS = ("do_resize", "keep_aspect_ratio", "do_rescale", "do_normalize", "do_pad")

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
    """The folder's config.json if it describes a supported depth-estimation model, its weight
    files are whole and its preprocessor_config.json is one this wrapper can follow.

    Reads JSON, safetensors headers and memory-mapped pickles (no transformers import), so
    params validation can call it cheaply and a bad file is named before anything is written.
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
    _check_architecture(config, folder)
    for path in weight_files(folder):
        if path.suffix == ".safetensors":
            check_safetensors(path)
        else:
            load_pickled_weights(path)
    read_processor(folder)
    return config


def _check_architecture(config: dict[str, Any], folder: Path) -> None:
    """A depth-estimation model_type whose architectures (when listed) are its depth class."""
    model_type = config.get("model_type")
    architectures = config.get("architectures") or []
    expected = ARCHITECTURES.get(model_type)
    if expected is None or any(a != expected for a in architectures):
        accepted = ", ".join(f"{t} ({a})" for t, a in ARCHITECTURES.items())
        raise CheckpointError(
            folder,
            f"{CONFIG_FILE}: model_type {model_type!r}, architectures {architectures}: not a "
            f"depth-estimation model this loads (accepted: {accepted})",
        )


def weight_files(folder: Path) -> list[Path]:
    """The weight files from_pretrained reads: safetensors when there are any (shards too),
    else the PyTorch pickles."""
    found = sorted(folder.glob("*.safetensors"))
    return found or sorted(folder.glob("pytorch_model*.bin"))


def check_safetensors(path: Path) -> None:
    """Header and length only: a truncated or cut-off download fails here, by name."""
    try:
        with safe_open(str(path), framework="pt"):
            pass
    except (SafetensorError, OSError) as error:
        raise CheckpointError(path, f"truncated or unreadable safetensors file ({error})") from None


def _first_reason(error: Exception) -> str:
    """The line of torch.load's message that says what was wrong (it adds paragraphs of advice)."""
    advice = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return next((line for line in lines if not line.startswith(advice)), type(error).__name__)


def load_pickled_weights(path: Path) -> Any:
    """A PyTorch pickle read with ``weights_only=True``: tensors and containers only, so a file
    whose unpickling would run code is refused, by name, without running it."""
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # a pre-zip (legacy) file cannot be memory-mapped
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            path,
            "holds pickled code or objects other than tensors, refused without running it "
            f"(torch.load weights_only=True: {_first_reason(error)})",
        ) from None
    except Exception as error:  # noqa: BLE001 - any unreadable file is the same error to the user
        raise CheckpointError(
            path,
            f"not a readable PyTorch weights file, truncated or corrupt ({_first_reason(error)})",
        ) from None


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
    if isinstance(size, dict):
        if "height" in size and "width" in size:
            size = (size["height"], size["width"])
        else:
            size = next((size[k] for k in ("shortest_edge", "longest_edge") if k in size), None)
    sides = size if isinstance(size, tuple) else (size, size)
    if any(_number(side) is None for side in sides):
        return None
    return int(sides[0]), int(sides[1])


def _number(value: Any) -> float | None:
    """A JSON number as a float; None for anything else (true and false included)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _value(processor: dict[str, Any], key: str, default: Any) -> Any:
    """A processor key as DPTImageProcessor reads it: absent or null means its default."""
    value = processor.get(key)
    return default if value is None else value


def _config_image_size(hf_config) -> int | None:
    for config in (hf_config, getattr(hf_config, "backbone_config", None)):
        value = getattr(config, "image_size", None) if config is not None else None
        if value is not None:
            return max(_pair(value))
    return None


def _processor_problem(processor: dict[str, Any]) -> tuple[str, str] | None:
    """(key, what is wrong) for the first value DPTImageProcessor could not run as this wrapper
    follows it, else None."""
    kind = processor.get("image_processor_type")
    if kind is not None and kind not in PROCESSOR_TYPES:
        return "image_processor_type", f"is not DPT's ({', '.join(PROCESSOR_TYPES)})"
    for key in PROCESSOR_FLAGS:
        if not isinstance(_value(processor, key, False), bool):
            return key, "is not true or false"
    if processor.get("size") is not None:
        target = _target_size(processor["size"])
        if target is None or min(target) < 1:
            return "size", "is not {height, width}, shortest_edge or a positive number of pixels"
    for key in ("ensure_multiple_of", "size_divisor"):
        value = processor.get(key)
        if value is not None and (_number(value) is None or value < 1 or value != int(value)):
            return key, "is not a positive whole number"
    scale = processor.get("rescale_factor")
    if scale is not None and (_number(scale) is None or scale <= 0):
        return "rescale_factor", "is not a positive number"
    for key, low in (("image_mean", None), ("image_std", 0.0)):
        value = processor.get(key)
        numbers = [_number(v) for v in value] if isinstance(value, list) else []
        if value is not None and (
            len(numbers) != 3 or None in numbers or (low is not None and min(numbers) <= low)
        ):
            return key, "is not 3 numbers" + ("" if low is None else " above 0")
    if _value(processor, "resample", 3) not in RESAMPLE_MODES:
        supported = ", ".join(f"{code} ({name})" for code, name in RESAMPLE_MODES.items())
        return "resample", f"is not a mode this wrapper resizes with ({supported})"
    if _value(processor, "do_pad", False) and not processor.get("size_divisor"):
        return "do_pad", "needs a size_divisor"
    return None


def read_processor(folder: Path) -> dict[str, Any] | None:
    """preprocessor_config.json with every key this wrapper reads checked; None without one.

    JSON only (params validation calls it): a value the processor could not run with, or one
    that would be read as something else (a string for a flag), is refused by file and key.
    """
    processor_file = folder / PREPROCESSOR_FILE
    if not processor_file.is_file():
        return None
    processor = _read_json(processor_file, folder)
    problem = _processor_problem(processor)
    if problem is not None:
        key, reason = problem
        raise CheckpointError(folder, f"{PREPROCESSOR_FILE}: {key} {processor[key]!r} {reason}")
    return processor


def square_only(hf_config) -> bool:
    """transformers' ViT-backed (and hybrid) DPT reshapes its tokens into a square grid: it
    runs square inputs only (a DINOv2-backed DPT and Depth Anything run any shape)."""
    backbone = getattr(hf_config, "backbone_config", None)
    return hf_config.model_type == "dpt" and (
        backbone is None or getattr(hf_config, "is_hybrid", False)
    )


def read_processing(processor: dict[str, Any], hf_config, folder: Path) -> ImageProcessing:
    """The folder's resize in and out, read as DPTImageProcessor reads a checked
    preprocessor_config.json (its defaults for absent keys); refused, by key, where it
    contradicts the model in config.json."""
    target = _target_size(processor.get("size")) or (DPT_DEFAULT_SIZE, DPT_DEFAULT_SIZE)
    multiple = int(processor.get("ensure_multiple_of") or 1)
    patch = max(patch_size_of(hf_config))
    if multiple > 1 and multiple % patch:
        raise CheckpointError(
            folder,
            f"{PREPROCESSOR_FILE}: ensure_multiple_of {multiple} is not a multiple of the "
            f"patch size {patch} in {CONFIG_FILE}",
        )
    processing = ImageProcessing(
        style="transformers",
        height=target[0],
        width=target[1],
        keep_aspect_ratio=_value(processor, "keep_aspect_ratio", False),
        multiple=multiple,
        resample=RESAMPLE_MODES[_value(processor, "resample", 3)],  # DPT's default: bicubic
        do_resize=_value(processor, "do_resize", True),
        pad_divisor=int(processor["size_divisor"]) if _value(processor, "do_pad", False) else None,
    )
    if square_only(hf_config):
        for key, works in (
            ("keep_aspect_ratio", not processing.keep_aspect_ratio),
            ("do_resize", processing.do_resize),
            ("size", processing.height == processing.width),
        ):
            if not works:
                raise CheckpointError(
                    folder,
                    f"{PREPROCESSOR_FILE}: {key} {processor.get(key)!r} cannot work: the "
                    f"ViT-backed DPT of {CONFIG_FILE} runs square inputs only",
                )
    return processing


def _default_processor(folder: Path, hf_config) -> dict[str, Any]:
    """Without preprocessor_config.json: the config's image_size (a square for a square-only
    DPT, else the aspect kept), sides multiples of the patch, bicubic, DPTImageProcessor's
    mean/std; said in a warning, since the authors' numbers need their own file."""
    side = _config_image_size(hf_config) or DPT_DEFAULT_SIZE
    patch = max(patch_size_of(hf_config))
    keep = not square_only(hf_config)
    warnings.warn(
        f"{folder / PREPROCESSOR_FILE} not found: running at {side}x{side} "
        f"({'aspect kept' if keep else 'square'}, sides multiples of {patch}, bicubic) with "
        f"mean/std {DPT_DEFAULT_MEAN}/{DPT_DEFAULT_STD}; copy the release's "
        f"{PREPROCESSOR_FILE} to run it as its authors do",
        stacklevel=3,
    )
    return {"size": side, "keep_aspect_ratio": keep, "ensure_multiple_of": patch}


def read_preprocessing(folder: Path, hf_config) -> TransformersModelConfig:
    """Working resolution and normalisation from preprocessor_config.json, else from the model
    config (image_size) and the DPT processor's defaults."""
    processor = read_processor(folder)
    if processor is None:
        processor = _default_processor(folder, hf_config)
    processing = read_processing(processor, hf_config, folder)
    patch = patch_size_of(hf_config)
    multiple = (math.lcm(patch[0], processing.multiple), math.lcm(patch[1], processing.multiple))
    if _value(processor, "do_normalize", True):
        mean = tuple(float(v) for v in processor.get("image_mean") or DPT_DEFAULT_MEAN)
        std = tuple(float(v) for v in processor.get("image_std") or DPT_DEFAULT_STD)
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    input_scale = (
        255.0 * float(_value(processor, "rescale_factor", 1 / 255))
        if _value(processor, "do_rescale", True)
        else 255.0
    )
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
    except (OSError, ValueError, KeyError, RuntimeError, TypeError, SafetensorError) as error:
        raise CheckpointError(
            folder, f"not a loadable Hugging Face depth-estimation model ({_first_reason(error)})"
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
