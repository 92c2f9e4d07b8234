"""How a foreign teacher's authors resize an image in and its prediction back out.

A teacher's pseudo-labels are only as good as the teacher is run, so a Hugging Face folder is run
as transformers' DPTImageProcessor and ``post_process_depth_estimation`` run it, and the authors'
Depth Anything ``.pth`` files as their ``infer_image`` runs them:

- ``transformers``: with ``keep_aspect_ratio`` both sides take the scale nearer 1 of
  ``height / H`` and ``width / W`` ("scale as little as possible"), then each side is rounded to
  ``multiple``; the uint8 image is resized with the processor's ``resample`` (antialiased, as
  torchvision does), optionally centre-padded to ``pad_divisor`` after normalisation, and the
  prediction goes back to the image size bicubically.
- ``official``: the larger of the two scales ("lower_bound": the short side reaches 518), each
  side rounded to the multiple and never below the target; the float image is resized bicubically
  without antialiasing (cv2's INTER_CUBIC), and the prediction goes back bilinearly with
  ``align_corners=True``.

A 480x640 image thus runs at 518x686 in both, as the authors run it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

Style = Literal["transformers", "official"]

# PIL's resampling codes (what preprocessor_config.json stores) that torch tensors resize with.
RESAMPLE_MODES = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def _to_multiple(value: float, multiple: int, minimum: int = 0) -> int:
    """`value` rounded to a multiple (up, when rounding would fall below `minimum`)."""
    rounded = round(value / multiple) * multiple
    if rounded < minimum:
        rounded = math.ceil(value / multiple) * multiple
    return int(rounded)


@dataclass(frozen=True)
class ImageProcessing:
    """One teacher's resize in and out (see the module docstring for the two styles)."""

    style: Style
    height: int
    width: int
    keep_aspect_ratio: bool
    multiple: int
    resample: str  # "nearest" | "bilinear" | "bicubic"
    do_resize: bool = True
    pad_divisor: int | None = None  # centre-pad the normalised input to a multiple of this

    def as_metadata(self) -> dict[str, Any]:
        return asdict(self)

    def working_size(self, height: int, width: int) -> tuple[int, int]:
        """The (h, w) the network sees (before padding) for an image of (height, width)."""
        if not self.do_resize:
            return height, width
        scale_h, scale_w = self.height / height, self.width / width
        if self.keep_aspect_ratio:
            if self.style == "official":
                scale_h = scale_w = max(scale_h, scale_w)
            elif abs(1 - scale_w) < abs(1 - scale_h):
                scale_h = scale_w
            else:
                scale_w = scale_h
        minimum = (self.height, self.width) if self.style == "official" else (0, 0)
        new_h = _to_multiple(scale_h * height, self.multiple, minimum[0])
        new_w = _to_multiple(scale_w * width, self.multiple, minimum[1])
        # A sliver (e.g. 4 x 4000) would round to 0 rows: the network needs one patch at least.
        return max(new_h, self.multiple), max(new_w, self.multiple)

    def prepare(
        self, image: np.ndarray, size: tuple[int, int], device: torch.device
    ) -> torch.Tensor:
        """uint8 (H, W, 3) -> float (1, 3, h, w) in [0, 1] at `size`, resized as the authors do."""
        if not image.flags.writeable or not image.flags.c_contiguous:
            image = np.array(image, order="C")  # torch cannot share read-only memory
        x = torch.from_numpy(image).to(device).permute(2, 0, 1)[None]
        if self.style == "official":
            x = x.float() / 255.0
            if tuple(x.shape[-2:]) != size:
                x = F.interpolate(x, size=size, mode=self.resample, align_corners=False)
            return x
        if tuple(x.shape[-2:]) != size:
            x = resize_uint8(x, size, self.resample)
        return x.float() / 255.0

    def resize_float(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """A float batch in [0, 1] resized to `size` (forward's path for tensors of any size)."""
        if tuple(x.shape[-2:]) == size:
            return x
        antialias = self.style == "transformers" and self.resample != "nearest"
        kwargs = {} if self.resample == "nearest" else {"align_corners": False}
        return F.interpolate(x, size=size, mode=self.resample, antialias=antialias, **kwargs)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Centre zero-padding of a normalised batch to `pad_divisor` (DPTImageProcessor's)."""
        if not self.pad_divisor:
            return x
        height, width = x.shape[-2:]
        extra_h = math.ceil(height / self.pad_divisor) * self.pad_divisor - height
        extra_w = math.ceil(width / self.pad_divisor) * self.pad_divisor - width
        return F.pad(
            x, (extra_w // 2, extra_w - extra_w // 2, extra_h // 2, extra_h - extra_h // 2)
        )

    def restore(self, prediction: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(B, h, w) network output -> (B, H, W) at `size`, the authors' way back."""
        if tuple(prediction.shape[-2:]) == tuple(size):
            return prediction
        x = prediction[:, None].float()
        if self.style == "official":
            return F.interpolate(x, size=size, mode="bilinear", align_corners=True)[:, 0]
        return F.interpolate(x, size=size, mode="bicubic", align_corners=False)[:, 0]


def resize_uint8(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """A uint8 (B, 3, H, W) batch resized as torchvision resizes it (antialiased, rounded)."""
    from torchvision.transforms.v2 import functional as tvF

    interpolation = {
        "nearest": tvF.InterpolationMode.NEAREST,
        "bilinear": tvF.InterpolationMode.BILINEAR,
        "bicubic": tvF.InterpolationMode.BICUBIC,
    }[mode]
    return tvF.resize(x, list(size), interpolation=interpolation, antialias=True)
