"""One decode + resize for every reader of a tar: the data stage's index, pseudo-labelling and
training all call `decode_sample`, so a pseudo-label and the image a student sees line up
pixel for pixel.

Each image is fitted to the working size as the folder importer fits it (cover, then centre
crop: `image_io.fit_image`), so every image of a dataset has one size and batches without
padding. A large JPEG is first decoded at a reduced DCT scale (Pillow's `draft`), never below
twice the working size, so a 24-megapixel photo costs a fraction of a full decode.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from depth_core.data.image_io import fit_depth, fit_image, to_rgb8
from depth_core.data.tar_shards.index import DecodeSpec, TarKind

IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp")
DEPTH_SUFFIXES = ("depth.png", "depth.npy")
_EXIF_ORIENTATION = 0x0112
_TRANSPOSED = (5, 6, 7, 8)  # orientations that swap width and height
DRAFT_MARGIN = 2.0


class MemberError(ValueError):
    """A tar member that is no usable sample (not an image, broken depth); says why."""


def image_suffix(sample: dict[str, Any]) -> str:
    """The suffix of a sample's picture (`jpg`, `png`, ...); MemberError when it has none."""
    for suffix in IMAGE_SUFFIXES:
        if suffix in sample:
            return suffix
    found = sorted(k for k in sample if not k.startswith("__"))
    raise MemberError(f"no image member (.{', .'.join(IMAGE_SUFFIXES)}); has {found}")


def decode_image(data: bytes, spec: DecodeSpec) -> tuple[np.ndarray, tuple[int, int]]:
    """Encoded bytes -> uint8 (height, width, 3) at the working size, and the original (h, w)
    as displayed (after EXIF rotation)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            stored_w, stored_h = img.size
            orientation = img.getexif().get(_EXIF_ORIENTATION, 1) if spec.apply_exif else 1
            h, w = (stored_w, stored_h) if orientation in _TRANSPOSED else (stored_h, stored_w)
            scale = max(spec.height / h, spec.width / w) * DRAFT_MARGIN
            if img.format == "JPEG" and scale < 1.0:
                img.draft("RGB", (math.ceil(stored_w * scale), math.ceil(stored_h * scale)))
            img.load()
            if spec.apply_exif:
                img = ImageOps.exif_transpose(img)
            rgb = to_rgb8(img)
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, ValueError...)
        raise MemberError(f"not a readable image ({exc})") from exc
    return fit_image(rgb, spec.height, spec.width), (h, w)


def decode_depth(
    data: bytes, suffix: str, spec: DecodeSpec, image_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """`.depth.png` (16-bit) or `.depth.npy` -> float32 depth (raw / depth_scale, 0 where
    invalid) and its mask at the working size, with the image's geometry."""
    try:
        if suffix == "depth.npy":
            raw = np.load(io.BytesIO(data), allow_pickle=False)
        else:
            with Image.open(io.BytesIO(data)) as img:
                raw = np.asarray(img)
    except Exception as exc:
        raise MemberError(f"unreadable {suffix} ({exc})") from exc
    raw = np.squeeze(np.asarray(raw, dtype=np.float32))
    if raw.shape != tuple(image_size):
        raise MemberError(f"{suffix} is {raw.shape}, the image {tuple(image_size)}")
    depth = raw / np.float32(spec.depth_scale)
    valid = np.isfinite(depth) & (depth > 0)
    depth = np.where(valid, depth, 0.0).astype(np.float32)
    return fit_depth(depth, valid, spec.height, spec.width, method="nearest")


def decode_sample(sample: dict[str, Any], kind: TarKind, spec: DecodeSpec) -> dict[str, Any]:
    """A grouped tar sample -> `image` (and `depth`, `mask` when labeled) at the working size,
    plus `orig_height`, `orig_width` and `bytes` (encoded size of its members)."""
    suffix = image_suffix(sample)
    image, (h, w) = decode_image(sample[suffix], spec)
    out: dict[str, Any] = {"image": image, "orig_height": h, "orig_width": w}
    size = len(sample[suffix])
    if kind == "labeled":
        depth_suffix = next((s for s in DEPTH_SUFFIXES if s in sample), None)
        if depth_suffix is None:
            raise MemberError(f"no depth member (.{' or .'.join(DEPTH_SUFFIXES)})")
        out["depth"], out["mask"] = decode_depth(sample[depth_suffix], depth_suffix, spec, (h, w))
        size += len(sample[depth_suffix])
    out["bytes"] = size
    return out
