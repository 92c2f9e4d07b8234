"""TartanAir: `<env>/<Easy|Hard>/PXXX/image_<side>/` with `depth_<side>/`, left and right.

Depth is a float32 `.npy` in metres; non-finite and non-positive values are invalid (the far
sky holds huge values: cap it with max_depth).
"""

from __future__ import annotations

import re
from pathlib import Path

from depth_core.data.image_io import ImageReadError, read_depth
from depth_core.data.layouts.base import RGBDLayout, read_rgb
from depth_core.data.source_files import SkippedFile

_TRAJECTORY = r"(?:(.*)/)?(Easy|Hard)/(P\d+)/"


def read_pair(image_path: Path, depth_path: Path):
    try:
        depth, valid = read_depth(depth_path)
    except ImageReadError as exc:
        raise SkippedFile("unreadable", str(exc)) from exc
    return read_rgb(image_path), depth, valid


LAYOUT = RGBDLayout(
    name="tartanair",
    images=(re.compile(_TRAJECTORY + r"image_(left|right)/(\d+)_\4\.png"),),
    depth=re.compile(_TRAJECTORY + r"depth_(left|right)/(\d+)_\4_depth\.npy"),
    read=read_pair,
    image_file="<env>/<Easy|Hard>/PXXX/image_left/NNNNNN_left.png (and image_right)",
    depth_file="<env>/<Easy|Hard>/PXXX/depth_left/NNNNNN_left_depth.npy (and depth_right)",
    convention="float32 .npy, metres; non-finite and <= 0 invalid",
)
