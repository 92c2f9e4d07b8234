"""A tiny ScanNet-layout benchmark and a DA-2K folder, written in the benchmarks' own formats
(shared by the zero-shot suite tests and the `benchmark` command tests)."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

# Depth of frame k (metres): a ramp along both axes, so a flipped prediction scores badly.
FRAME_SHAPE = (24, 32)


def frame_depth(k: int) -> np.ndarray:
    rows, cols = np.mgrid[0 : FRAME_SHAPE[0], 0 : FRAME_SHAPE[1]]
    return (1.0 + 0.1 * rows + 0.02 * cols + 0.5 * k).astype(np.float32)


def _picture(k: int) -> np.ndarray:
    # the frame number is written into the picture, so a predictor can find its ground truth
    image = np.zeros((*FRAME_SHAPE, 3), np.uint8)
    image[..., 0] = k
    return image


def write_scannet(root):
    """Three good frames, one whose depth PNG is corrupt and one listed but missing."""
    lines = []
    for k in range(3):
        color = root / "scene0000_00" / "color" / f"{k:06d}.png"
        depth = root / "scene0000_00" / "depth" / f"{k:06d}.png"
        color.parent.mkdir(parents=True, exist_ok=True)
        depth.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_picture(k)).save(color)
        Image.fromarray(np.round(frame_depth(k) * 1000).astype(np.uint16)).save(depth)
        lines.append(f"{color.relative_to(root)} {depth.relative_to(root)}")
    Image.fromarray(_picture(3)).save(root / "scene0000_00" / "color" / "000003.png")
    (root / "scene0000_00" / "depth" / "000003.png").write_bytes(b"not a png")
    lines.append("scene0000_00/color/000003.png scene0000_00/depth/000003.png")
    lines.append("scene0000_00/color/000004.png scene0000_00/depth/000004.png")
    (root / "scannet_test.txt").write_text("\n".join(lines) + "\n")
    return root


def exact_predict(images):
    """Exactly 2 / depth + 1 for each frame (an affine map of the true disparity)."""
    return [2.0 / frame_depth(int(image[0, 0, 0])) + 1.0 for image in images]


def write_da2k(root):
    """One image with two annotated pairs, and one annotated image that is missing."""
    (root / "indoor").mkdir(parents=True)
    Image.fromarray(_picture(0)).save(root / "indoor" / "a.png")
    annotations = {
        # rows grow downward and depth grows with rows in frame 0: the upper point is closer
        "indoor/a.png": [
            {"point1": [2, 3], "point2": [20, 3], "closer_point": "point1"},
            {"point1": [22, 5], "point2": [1, 5], "closer_point": "point2"},
        ],
        "indoor/missing.png": [{"point1": [1, 1], "point2": [2, 2], "closer_point": "point2"}],
    }
    (root / "annotations.json").write_text(json.dumps(annotations))
    return root
