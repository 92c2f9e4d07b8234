"""Batched disparity prediction for lists (or streams) of images of any sizes.

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
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice

import numpy as np
import torch
import torch.nn.functional as F

from depth_core.device import autocast
from depth_core.models.depth_model import DepthModel

# Images read ahead per group-and-batch round, as a multiple of batch_size: bounds memory
# while still finding same-size images to batch together.
WINDOW_BATCHES = 8
# Larger images are box-reduced in uint8 until their longer side is within this factor of the
# model's input; smaller ones go to the (antialiased) float resize unchanged.
REDUCE_HEADROOM = 2


def inference_size(
    height: int, width: int, img_size: int, multiple: tuple[int, int]
) -> tuple[int, int]:
    """(h, w) with the longer side ~ ``img_size``, aspect kept, each a multiple of ``multiple``."""
    scale = img_size / max(height, width)
    mh, mw = multiple
    return (max(mh, round(height * scale / mh) * mh), max(mw, round(width * scale / mw) * mw))


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


def _flip_averaged(model: DepthModel, batch: torch.Tensor, flip_tta: bool) -> torch.Tensor:
    if not flip_tta:
        return model(batch)
    both = model(torch.cat([batch, batch.flip(-1)]))
    plain, flipped = both.chunk(2)
    return 0.5 * (plain + flipped.flip(-1))


def _predict_batch(
    model: DepthModel, batch: torch.Tensor, flip_tta: bool, scales: Sequence[float] = (1.0,)
) -> torch.Tensor:
    """Mean prediction over input scales (each resized back to the batch's size) and flips."""
    size = tuple(batch.shape[-2:])
    total = None
    for scale in scales:
        x = batch
        if scale != 1.0:
            scaled = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
            x = F.interpolate(
                batch, size=scaled, mode="bilinear", antialias=True, align_corners=False
            )
        pred = _flip_averaged(model, x, flip_tta)
        if tuple(pred.shape[-2:]) != size:
            pred = F.interpolate(pred[:, None], size=size, mode="bilinear", align_corners=False)[
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


class _Pending:
    """One image of the read-ahead window: its original size and its reduced pixels."""

    def __init__(self, index: int, image: np.ndarray, img_size: int):
        self.original = tuple(_check_image(index, image).shape[:2])
        self.image = reduce_for_model(image, img_size)


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
        size = inference_size(*pending.original, model.config.img_size, model.input_multiple)
        groups[size].append(position)

    results: list[torch.Tensor | None] = [None] * len(window)
    for size, positions in groups.items():
        for start in range(0, len(positions), batch_size):
            chunk = positions[start : start + batch_size]
            batch = torch.cat([_to_model_input(window[p].image, size, device) for p in chunk])
            with autocast(device, amp):
                disparity = _predict_batch(model, batch, flip_tta, scales)
            for p, pred in zip(chunk, disparity.float()):
                results[p] = pred
    return results  # type: ignore[return-value]


def _at_original_size(pred: torch.Tensor, original: tuple[int, int]) -> np.ndarray:
    """A model-size prediction resized to its image's resolution: non-negative float32, its
    own memory (never a view into the batch)."""
    if tuple(pred.shape) == original:
        pred = pred.clone()
    else:
        pred = F.interpolate(pred[None, None], size=original, mode="bilinear", align_corners=False)[
            0, 0
        ]
    return pred.clamp_(min=0.0).cpu().numpy()


def iterate_predictions(
    model: DepthModel,
    images: Iterable[np.ndarray],
    batch_size: int = 8,
    device: str | torch.device | None = None,
    flip_tta: bool = False,
    amp: str | torch.dtype | None = "fp32",
    scales: Sequence[float] = (1.0,),
) -> Iterator[np.ndarray]:
    """Yield one float32 (H, W) disparity per uint8 (H, W, 3) image, in input order.

    ``images`` may be a lazy iterable (read from shards); it is consumed a window at a time.
    ``scales`` > 1 entries average predictions at resized inputs (multi-scale test-time
    augmentation), with ``flip_tta`` at each.
    ``device`` moves the model there (default: where the model already is). ``amp`` is
    "fp32", "bf16" or "fp16". The model is in eval mode while predicting and its previous
    mode is restored afterwards.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    scales = check_scales(scales)
    # An onnxruntime-backed model (depth_core.export) has no parameters: it runs on the CPU.
    here = next(model.parameters(), torch.empty(0)).device
    target = torch.device(device) if device is not None else here
    model.to(target)
    was_training = model.training
    model.eval()
    try:
        pending = (_Pending(i, image, model.config.img_size) for i, image in enumerate(images))
        while window := list(islice(pending, batch_size * WINDOW_BATCHES)):
            with torch.inference_mode():
                predictions = _predict_window(
                    model, window, batch_size, target, flip_tta, amp, scales
                )
            for item, pred in zip(window, predictions):
                with torch.inference_mode():  # not around the yield: the caller's code
                    disparity = _at_original_size(pred, item.original)
                yield disparity
    finally:
        model.train(was_training)


def predict_disparity(
    model: DepthModel,
    images: Iterable[np.ndarray],
    batch_size: int = 8,
    device: str | torch.device | None = None,
    flip_tta: bool = False,
    amp: str | torch.dtype | None = "fp32",
    scales: Sequence[float] = (1.0,),
) -> list[np.ndarray]:
    """List form of :func:`iterate_predictions`: float32 disparities at original resolutions."""
    return list(iterate_predictions(model, images, batch_size, device, flip_tta, amp, scales))
