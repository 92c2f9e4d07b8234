"""Virtual KITTI 2: `SceneXX/<variation>/frames/{rgb,depth}/Camera_K/`.

Depth is a 16-bit PNG in centimetres; 65535 (655.35 m, the sky) and 0 are invalid.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from depth_core.data.layouts.base import RGBDLayout, masked_depth, read_rgb
from depth_core.data.source_files import SkippedFile

CENTIMETRES_PER_METRE = 100.0
SKY = 65535
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")
_FRAME = r"(?:(.*)/)?(Scene\d+)/([^/]+)/frames/{kind}/(Camera_\d+)/{kind}_(\d+)\.{ext}"


def read_depth_centimetres(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Planar depth in metres and its validity from a Virtual KITTI 2 depth PNG."""
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            raw = np.asarray(img)
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, ValueError...)
        raise SkippedFile("unreadable", f"cannot read depth map {path}: {exc}") from exc
    if mode not in _SIXTEEN_BIT_MODES or raw.ndim != 2:
        raise SkippedFile(
            "bad_depth",
            f"depth map {path} has mode {mode}; Virtual KITTI 2 depth is a 16-bit grey PNG",
        )
    raw = raw.astype(np.int64)
    return masked_depth(raw / CENTIMETRES_PER_METRE, raw != SKY)


def read_pair(image_path: Path, depth_path: Path):
    return (read_rgb(image_path), *read_depth_centimetres(depth_path))


LAYOUT = RGBDLayout(
    name="vkitti2",
    images=(re.compile(_FRAME.format(kind="rgb", ext="jpg")),),
    depth=re.compile(_FRAME.format(kind="depth", ext="png")),
    read=read_pair,
    image_file="SceneXX/<variation>/frames/rgb/Camera_K/rgb_NNNNN.jpg",
    depth_file="SceneXX/<variation>/frames/depth/Camera_K/depth_NNNNN.png",
    convention="16-bit PNG, centimetres; 65535 (sky) and 0 invalid",
)
