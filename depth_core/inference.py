"""The one inference path: loading a model to predict with, and batched disparity prediction
for lists (or streams) of images of any sizes.

`predict`, `evaluate`, `evaluate-pairs`, the pseudo-labels and the agreement stage all load
their models with `load_for_inference` and predict through `iterate_predictions`, so one
checkpoint gives the same disparities (and the same scores) through every one of them. They
share one precision default, `DEFAULT_AMP` (fp32 on every device: the numbers training's
validation records); "auto" asks for bf16 where it is native (`resolve_amp`).

Each image is resized so its longer side is the model's training resolution (aspect ratio kept,
sides rounded to the backbone's stride), same-size images are batched together, and every
prediction is resized back to the image's original resolution.

Memory stays bounded for very large pictures: an image is reduced (box filter, in uint8) to at
most `REDUCE_HEADROOM` times the model's input before it becomes floats, the read-ahead window
keeps only those reduced images and model-size predictions, and each prediction is resized to
its original resolution only when it is handed out. A 6000x4000 photograph thus costs its
uint8 pixels (72 MB) while it is reduced and one float32 map at full size (96 MB) when its
prediction is returned, instead of several full-size float copies.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from depth_core.device import autocast, pick_device
from depth_core.model_loading import load_depth_model, model_kind
from depth_core.models.depth_model import DepthModel
from depth_core.models.image_processing import ImageProcessing
from depth_core.models.input_size import inference_size
from depth_core.training.precision import resolve_precision

# The precision every command and stage predicts in unless told otherwise (`--amp`).
DEFAULT_AMP = "fp32"
AMP_CHOICES = ("auto", "fp32", "bf16", "fp16")

# Images read ahead per group-and-batch round, as a multiple of batch_size: bounds memory
# while still finding same-size images to batch together.
WINDOW_BATCHES = 8
# Larger images are box-reduced in uint8 until their longer side is within this factor of the
# model's input; smaller ones go to the (antialiased) float resize unchanged.
REDUCE_HEADROOM = 2


def resolve_amp(amp: str, device: torch.device) -> str:
    """The precision inference runs in: "fp32", "bf16", "fp16" as asked; "auto" is bf16 where
    training uses it (CUDA with bf16, CPUs with native bf16), fp32 elsewhere.

    Measured with benchmarks/bench_pseudo.py on this AVX512-BF16 CPU, teacher convnext_pico
    (features 64) on 96x128 images, batches of 32 under inference_mode: fp32 89.5 images/s,
    bf16 186.3 images/s (2.1x), largest deviation 0.4% of the disparity range.
    """
    if amp in ("fp16", "fp32", "bf16"):
        return amp
    return resolve_precision(amp, torch.device(device))


def prepare_for_inference(model: torch.nn.Module, amp: str) -> torch.nn.Module:
    """Eval mode and, for bf16, channels-last weights stored in bf16, so autocast stops
    re-casting every weight on every batch (faster convolutions in the DPT head). Buffers (the
    input normalisation constants) stay float32, and so do batch-norm layers, whose running
    statistics must match their affine parameters' dtype. An fp32 model is left as loaded, so
    its predictions equal those of the model training validated."""
    model = model.eval()
    if amp != "bf16":
        return model
    model = model.to(memory_format=torch.channels_last)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            continue
        for param in module.parameters(recurse=False):
            param.data = param.data.to(torch.bfloat16)
    return model


@dataclass
class InferenceModel:
    """A model loaded to predict with, and the device and precision it predicts in."""

    model: torch.nn.Module
    device: torch.device
    amp: str
    described: dict

    def iterate(
        self,
        images: Iterable[np.ndarray],
        batch_size: int = 8,
        flip_tta: bool = False,
        scales: Sequence[float] = (1.0,),
    ) -> Iterator[np.ndarray]:
        return iterate_predictions(
            self.model, images, batch_size, self.device, flip_tta, self.amp, scales
        )

    def predict(
        self,
        images: Iterable[np.ndarray],
        batch_size: int = 8,
        flip_tta: bool = False,
        scales: Sequence[float] = (1.0,),
    ) -> list[np.ndarray]:
        return list(self.iterate(images, batch_size, flip_tta, scales))


def load_for_inference(
    source: str | Path, device: str | torch.device = "auto", amp: str = DEFAULT_AMP
) -> InferenceModel:
    """Load a checkpoint, Hugging Face folder or ONNX export (`depth_core.model_loading`) on
    `device` in the precision `amp` resolves to there. An ONNX export runs through onnxruntime
    on the CPU in fp32, whatever was asked."""
    onnx = model_kind(source) == "onnx"
    device = pick_device("cpu" if onnx else device)
    amp = "fp32" if onnx else resolve_amp(amp, device)
    model, described = load_depth_model(source, map_location=device)
    return InferenceModel(prepare_for_inference(model, amp), device, amp, described)


def predict_each(
    sources: Mapping[str, str | Path],
    images: Sequence[np.ndarray],
    device: str | torch.device = "auto",
    amp: str = DEFAULT_AMP,
    batch_size: int = 8,
) -> dict[str, list[np.ndarray]]:
    """Each named model's disparities on the same images (experts for a vote), one model
    loaded at a time."""
    return {
        name: load_for_inference(source, device, amp).predict(images, batch_size)
        for name, source in sources.items()
    }


def _check_image(index: int, image: np.ndarray) -> np.ndarray:
    if (
        not isinstance(image, np.ndarray)
        or image.dtype != np.uint8
        or image.ndim != 3
        or image.shape[2] != 3
    ):
        described = (
            f"{image.dtype} array of shape {image.shape}"
            if isinstance(image, np.ndarray)
            else type(image).__name__
        )
        raise ValueError(f"images[{index}] must be a uint8 (H, W, 3) array, got {described}")
    if min(image.shape[:2]) < 1:
        raise ValueError(f"images[{index}] is empty: shape {image.shape}")
    return image


def reduce_for_model(image: np.ndarray, img_size: int) -> np.ndarray:
    """`image`, box-reduced by an integer factor in uint8 when its longer side exceeds
    `REDUCE_HEADROOM * img_size`, so no full-size float copy of a huge photograph is made."""
    factor = max(image.shape[:2]) // (REDUCE_HEADROOM * img_size)
    if factor < 2:
        return image
    from PIL import Image

    return np.array(Image.fromarray(image).reduce(int(factor)))


def _to_model_input(image: np.ndarray, size: tuple[int, int], device: torch.device) -> torch.Tensor:
    if not image.flags.writeable or not image.flags.c_contiguous:
        image = np.array(image, order="C")  # torch cannot share read-only memory
    x = torch.from_numpy(image).to(device).permute(2, 0, 1)[None].float() / 255.0
    if tuple(x.shape[-2:]) != size:
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    return x.clamp_(0.0, 1.0)


def _flip_averaged(predict, batch: torch.Tensor, flip_tta: bool) -> torch.Tensor:
    if not flip_tta:
        return predict(batch)
    both = predict(torch.cat([batch, batch.flip(-1)]))
    plain, flipped = both.chunk(2)
    return 0.5 * (plain + flipped.flip(-1))


def _predict_batch(
    model: DepthModel, batch: torch.Tensor, flip_tta: bool, scales: Sequence[float] = (1.0,)
) -> torch.Tensor:
    """Mean prediction over input scales and flips. A model with its own `processing` (a foreign
    teacher) gives its raw output at the network's size (`predict_raw`), which `restore_prediction`
    brings back its authors' way; other models give disparity at the batch's size."""
    predict = model.predict_raw if _processing_of(model) is not None else model
    size = tuple(batch.shape[-2:])
    total = None
    for scale in scales:
        x = batch
        if scale != 1.0:
            scaled = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
            x = F.interpolate(
                batch, size=scaled, mode="bilinear", antialias=True, align_corners=False
            )
        pred = _flip_averaged(predict, x, flip_tta)
        if total is not None and pred.shape != total.shape:
            target = tuple(total.shape[-2:])
        elif total is None and predict is model and tuple(pred.shape[-2:]) != size:
            target = size
        else:
            target = None
        if target is not None:
            pred = F.interpolate(pred[:, None], size=target, mode="bilinear", align_corners=False)[
                :, 0
            ]
        total = pred if total is None else total + pred
    return total / len(scales)


def check_scales(scales: Sequence[float]) -> tuple[float, ...]:
    """The multi-scale TTA factors as a tuple; one shared check for params and library calls."""
    scales = tuple(float(s) for s in scales)
    if not scales or any(not 0.0 < s <= 4.0 for s in scales):
        raise ValueError(
            f"scales must be a non-empty list of factors in (0, 4], got {list(scales)}"
        )
    return scales


def _processing_of(model) -> ImageProcessing | None:
    """The resize in and out a foreign teacher's authors use, None for depth-distill models."""
    return getattr(model, "processing", None)


class _Pending:
    """One image of the read-ahead window: its original size and its (reduced) pixels. A model
    with its own processing gets the full image, resized as its authors resize it."""

    def __init__(self, index: int, image: np.ndarray, model: DepthModel):
        self.original = tuple(_check_image(index, image).shape[:2])
        own = _processing_of(model) is not None
        self.image = image if own else reduce_for_model(image, model.config.img_size)


def working_size(model: DepthModel, height: int, width: int) -> tuple[int, int]:
    """The size `model` predicts at for an image of (height, width); images are batched by it."""
    processing = _processing_of(model)
    if processing is not None:
        return processing.working_size(height, width)
    return inference_size(height, width, model.config.img_size, model.input_multiple)


def _model_input(
    model: DepthModel, image: np.ndarray, size: tuple[int, int], device: torch.device
) -> torch.Tensor:
    processing = _processing_of(model)
    if processing is not None:
        return processing.prepare(image, size, device)
    return _to_model_input(image, size, device)


def _predict_window(
    model: DepthModel,
    window: Sequence[_Pending],
    batch_size: int,
    device: torch.device,
    flip_tta: bool,
    amp: str | torch.dtype | None,
    scales: Sequence[float],
) -> list[torch.Tensor]:
    """Model-size float predictions (on `device`) for one window, in window order."""
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for position, pending in enumerate(window):
        groups[working_size(model, *pending.original)].append(position)

    results: list[torch.Tensor | None] = [None] * len(window)
    for size, positions in groups.items():
        for start in range(0, len(positions), batch_size):
            chunk = positions[start : start + batch_size]
            batch = torch.cat([_model_input(model, window[p].image, size, device) for p in chunk])
            with autocast(device, amp):
                disparity = _predict_batch(model, batch, flip_tta, scales)
            for p, pred in zip(chunk, disparity.float()):
                results[p] = pred
    return results  # type: ignore[return-value]


def resize_disparity(pred: torch.Tensor, original: tuple[int, int]) -> np.ndarray:
    """A (H, W) prediction resized (bilinear) to `original` (its image's resolution, or a
    benchmark's ground truth): non-negative float32, its own memory (never a view into the
    batch)."""
    if tuple(pred.shape) == original:
        pred = pred.clone()
    else:
        pred = F.interpolate(pred[None, None], size=original, mode="bilinear", align_corners=False)[
            0, 0
        ]
    return pred.clamp_(min=0.0).cpu().numpy()


def restore_prediction(
    model: DepthModel, pred: torch.Tensor, original: tuple[int, int]
) -> np.ndarray:
    """One model-size prediction at its image's resolution as float32 disparity: a foreign
    teacher's raw output its authors' way back, then to disparity; else `resize_disparity`."""
    processing = _processing_of(model)
    if processing is None:
        return resize_disparity(pred, original)
    restored = model.to_disparity(processing.restore(pred[None], original))[0]
    return restored.float().clamp_(min=0.0).cpu().numpy()


def iterate_predictions(
    model: DepthModel,
    images: Iterable[np.ndarray],
    batch_size: int = 8,
    device: str | torch.device | None = None,
    flip_tta: bool = False,
    amp: str | torch.dtype | None = DEFAULT_AMP,
    scales: Sequence[float] = (1.0,),
) -> Iterator[np.ndarray]:
    """Yield one float32 (H, W) disparity per uint8 (H, W, 3) image, in input order.

    ``images`` may be a lazy iterable (read from shards); it is consumed a window at a time.
    ``scales`` > 1 entries average predictions at resized inputs (multi-scale test-time
    augmentation), with ``flip_tta`` at each.
    ``device`` moves the model there (default: where the model already is). ``amp`` is
    "fp32", "bf16", "fp16" or "auto" (`resolve_amp`). The model is in eval mode while predicting and its previous
    mode is restored afterwards.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    scales = check_scales(scales)
    # An onnxruntime-backed model (depth_core.export) has no parameters: it runs on the CPU.
    here = next(model.parameters(), torch.empty(0)).device
    target = torch.device(device) if device is not None else here
    if isinstance(amp, str):
        amp = resolve_amp(amp, target)
    model.to(target)
    was_training = model.training
    model.eval()
    try:
        pending = (_Pending(i, image, model) for i, image in enumerate(images))
        while window := list(islice(pending, batch_size * WINDOW_BATCHES)):
            with torch.inference_mode():
                predictions = _predict_window(
                    model, window, batch_size, target, flip_tta, amp, scales
                )
            for item, pred in zip(window, predictions):
                with torch.inference_mode():  # not around the yield: the caller's code
                    disparity = restore_prediction(model, pred, item.original)
                yield disparity
    finally:
        model.train(was_training)


def predict_disparity(
    model: DepthModel,
    images: Iterable[np.ndarray],
    batch_size: int = 8,
    device: str | torch.device | None = None,
    flip_tta: bool = False,
    amp: str | torch.dtype | None = DEFAULT_AMP,
    scales: Sequence[float] = (1.0,),
) -> list[np.ndarray]:
    """List form of :func:`iterate_predictions`: float32 disparities at original resolutions."""
    return list(iterate_predictions(model, images, batch_size, device, flip_tta, amp, scales))
