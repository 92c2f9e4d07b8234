"""BlendedMVS: `<PID>/blended_images/NNNNNNNN.jpg` with `<PID>/rendered_depth_maps/NNNNNNNN.pfm`.

Depth is a one-channel PFM in the reconstruction's units (BlendedMVS is not metric); 0 marks
masked pixels. The `_masked.jpg` copies of the images are not part of the pairing.
"""

from __future__ import annotations

import re
from pathlib import Path

from depth_core.data.layouts.base import RGBDLayout, masked_depth, read_rgb
from depth_core.data.pfm import PFMError, read_pfm
from depth_core.data.source_files import SkippedFile


def read_pair(image_path: Path, depth_path: Path):
    try:
        depth = read_pfm(depth_path)
    except PFMError as exc:
        raise SkippedFile("unreadable", str(exc)) from exc
    if depth.ndim != 2:
        raise SkippedFile(
            "bad_depth",
            f"depth map {depth_path} has {depth.shape[2]} channels; BlendedMVS depth is a "
            "one-channel (Pf) PFM",
        )
    return (read_rgb(image_path), *masked_depth(depth, depth != 0))


LAYOUT = RGBDLayout(
    name="blendedmvs",
    images=(re.compile(r"(?:(.*)/)?blended_images/(\d+)\.jpg"),),
    depth=re.compile(r"(?:(.*)/)?rendered_depth_maps/(\d+)\.pfm"),
    read=read_pair,
    image_file="<PID>/blended_images/NNNNNNNN.jpg (not the _masked.jpg copies)",
    depth_file="<PID>/rendered_depth_maps/NNNNNNNN.pfm",
    convention="PFM, the reconstruction's units (not metric); 0 invalid",
)
