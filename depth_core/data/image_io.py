"""Reading users' images and depth maps, and fitting them to the training resolution.

Real RGB-D data arrives in many conventions (16-bit PNG in millimetres or 1/5000 m, KITTI's
1/256 m, float arrays, disparity maps); everything here converts to the project's one
convention: uint8 RGB `(H, W, 3)` and float32 z-depth `(H, W)` with `0` and a False mask
wherever the value is unusable. Resizing never lets an invalid pixel leak into a valid one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
DepthResize = Literal["nearest", "mean"]


class ImageReadError(ValueError):
    """An image or depth file that cannot be used; the message names the file."""


def read_image(path: str | Path, apply_exif: bool = True) -> np.ndarray:
    """Read any Pillow-readable picture as uint8 RGB `(H, W, 3)`.

    Grey, palette, RGBA and CMYK are converted; 16-bit and float greyscale are rescaled to
    8 bits rather than clipped. `apply_exif` rotates camera JPEGs upright (turn it off when
    the picture must stay aligned with a depth raster).
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            if apply_exif:
                img = ImageOps.exif_transpose(img)
            return to_rgb8(img)
    except ImageReadError:
        raise
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, ValueError...)
        raise ImageReadError(f"cannot read image {path}: {exc}") from exc


def to_rgb8(img: Image.Image) -> np.ndarray:
    """A loaded Pillow image as uint8 RGB `(H, W, 3)`, by the conventions of `read_image`."""
    if img.mode == "RGB":
        return np.asarray(img, dtype=np.uint8).copy()
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        grey = np.asarray(img).astype(np.float64)
        if img.mode == "F":
            finite = grey[np.isfinite(grey)]
            top = 1.0 if finite.size == 0 or finite.max() <= 1.0 else 255.0
        else:
            top = 255.0 if grey.max(initial=0) <= 255 else 65535.0
        grey8 = np.clip(np.nan_to_num(grey) / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey8[:, :, None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"), dtype=np.uint8)
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def read_depth(
    path: str | Path,
    scale: float | None = None,
    is_disparity: bool = False,
    min_depth: float = 0.0,
    max_depth: float | None = None,
    key: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Read a depth (or disparity) map as float32 z-depth plus a bool validity mask.

    Raw values are divided by `scale` (None = 1): 16-bit PNG depth is 1000 per metre for NYU,
    5000 for TUM, 256 for KITTI. With `is_disparity` the scaled values are disparities and
    depth = 1 / disparity where positive. Invalid (0, negative, NaN, inf, outside
    `(min_depth, max_depth]`) pixels come back as depth 0 with mask False.
    Formats: single-channel PNG/TIFF (8/16-bit, float), `.npy`, `.npz` (key `depth`, or
    `key`, or the only array in the file).
    """
    path = Path(path)
    if scale is not None and not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"depth scale must be a positive number, got {scale} for {path}")
    raw = _read_depth_array(path, key)
    values = raw.astype(np.float64)
    if scale is not None:
        values = values / scale
    with np.errstate(divide="ignore", invalid="ignore"):
        valid = np.isfinite(values) & (values > 0)
        if is_disparity:
            values = np.where(valid, 1.0 / np.where(valid, values, 1.0), 0.0)
            valid &= np.isfinite(values)
    valid &= values > min_depth
    if max_depth is not None:
        valid &= values <= max_depth
    depth = np.where(valid, values, 0.0).astype(np.float32)
    return depth, valid


def _read_depth_array(path: Path, key: str | None) -> np.ndarray:
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                array = archive[_pick_npz_key(path, archive.files, key)]
        else:
            with Image.open(path) as img:
                img.load()
                if img.mode not in ("I;16", "I;16B", "I;16L", "I", "F", "L"):
                    raise ImageReadError(
                        f"depth map {path} has mode {img.mode}; expected a single-channel "
                        "(8/16-bit or float) image"
                    )
                array = np.asarray(img)
    except ImageReadError:
        raise
    except Exception as exc:
        raise ImageReadError(f"cannot read depth map {path}: {exc}") from exc
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim != 2:
        raise ImageReadError(f"depth map {path} has shape {array.shape}; expected (H, W)")
    if not (np.issubdtype(array.dtype, np.number) and not np.iscomplexobj(array)):
        raise ImageReadError(f"depth map {path} has non-numeric dtype {array.dtype}")
    return array


def _pick_npz_key(path: Path, keys: list[str], key: str | None) -> str:
    if key is not None:
        if key not in keys:
            raise ImageReadError(f"{path} has no array {key!r} (arrays: {keys})")
        return key
    if "depth" in keys:
        return "depth"
    if len(keys) == 1:
        return keys[0]
    raise ImageReadError(f"{path} holds arrays {keys}; expected 'depth' or a single array")


# --------------------------------------------------------------------------- geometry


def crop_box_for_aspect(height: int, width: int, out_height: int, out_width: int):
    """Centred (left, top, right, bottom) box of the largest region with the output's aspect.

    Cropping this box and resizing it to the output size equals "resize keeping the aspect
    ratio so the output is covered, then centre-crop", without an intermediate rounding.
    """
    if min(height, width, out_height, out_width) <= 0:
        raise ValueError(
            f"sizes must be positive: input {height}x{width}, output {out_height}x{out_width}"
        )
    target = out_width / out_height
    if width / height > target:
        crop_w, crop_h = height * target, float(height)
    else:
        crop_w, crop_h = float(width), width / target
    left = (width - crop_w) / 2.0
    top = (height - crop_h) / 2.0
    return left, top, left + crop_w, top + crop_h


def resize_image(image: np.ndarray, height: int, width: int, box=None) -> np.ndarray:
    """Resize uint8 RGB (optionally the float `box` region) with antialiased bilinear filtering."""
    pil = Image.fromarray(np.ascontiguousarray(image))
    out = pil.resize((width, height), Image.Resampling.BILINEAR, box=box, reducing_gap=3.0)
    return np.asarray(out, dtype=np.uint8)


def resize_depth(
    depth: np.ndarray,
    mask: np.ndarray,
    height: int,
    width: int,
    method: DepthResize = "nearest",
    box=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Resize depth without mixing invalid pixels into valid ones.

    `nearest` samples the source pixel under each output pixel centre (values stay real
    measurements). `mean` averages only the valid source pixels whose centres fall in each
    output pixel's footprint; an output pixel is valid when any valid source pixel lies there,
    which keeps sparse LiDAR depth alive under strong downscaling.
    """
    mask = np.asarray(mask, dtype=bool) & np.isfinite(depth) & (depth > 0)
    h, w = depth.shape
    left, top, right, bottom = box if box is not None else (0.0, 0.0, float(w), float(h))
    if method == "nearest":
        ys = _nearest_indices(top, bottom, height, h)
        xs = _nearest_indices(left, right, width, w)
        out_mask = mask[ys[:, None], xs[None, :]]
        out = np.where(out_mask, depth[ys[:, None], xs[None, :]], 0.0).astype(np.float32)
        return out, out_mask
    if method == "mean":
        weights = mask.astype(np.float32)
        masked = np.where(mask, depth, 0.0).astype(np.float32)
        size = (width, height)
        resample = Image.Resampling.BOX
        num = np.asarray(Image.fromarray(masked).resize(size, resample, box=box))
        den = np.asarray(Image.fromarray(weights).resize(size, resample, box=box))
        out_mask = den > 1e-6
        out = np.where(out_mask, num / np.where(out_mask, den, 1.0), 0.0).astype(np.float32)
        out_mask &= out > 0
        return out, out_mask
    raise ValueError(f"unknown depth resize method {method!r}; use 'nearest' or 'mean'")


def _nearest_indices(start: float, stop: float, count: int, limit: int) -> np.ndarray:
    step = (stop - start) / count
    centres = start + (np.arange(count) + 0.5) * step
    return np.clip(np.floor(centres).astype(np.int64), 0, limit - 1)


def fit_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize keeping the aspect ratio so `(height, width)` is covered, then centre-crop."""
    box = crop_box_for_aspect(image.shape[0], image.shape[1], height, width)
    return resize_image(image, height, width, box=box)


def fit_depth(
    depth: np.ndarray,
    mask: np.ndarray,
    height: int,
    width: int,
    method: DepthResize = "nearest",
) -> tuple[np.ndarray, np.ndarray]:
    """Same geometry as `fit_image`, applied to depth with a mask-safe resize."""
    box = crop_box_for_aspect(depth.shape[0], depth.shape[1], height, width)
    return resize_depth(depth, mask, height, width, method=method, box=box)
