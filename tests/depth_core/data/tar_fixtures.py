"""Tars built in a test from generated pictures: photos of several sizes, RGB-D pairs, a
member that is no image, a tar cut short."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image


def photo(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth picture with a little noise: gradients and a disc, like a photo compresses."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(0, 255, 3)
    image = base + 60 * np.stack([x / width, y / height, (x + y) / (width + height)], -1)
    cy, cx, r = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width, height / 4
    image[(y - cy) ** 2 + (x - cx) ** 2 < r**2] *= 0.5
    image += rng.normal(0, 3, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def encode(image: np.ndarray, fmt: str = "JPEG", **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def depth_png(height: int, width: int, seed: int) -> bytes:
    """16-bit depth in millimetres (1 to 5 m), a zero (invalid) corner."""
    rng = np.random.default_rng(seed)
    depth = rng.uniform(1000, 5000, (height, width)).astype(np.uint16)
    depth[:2, :2] = 0
    return encode(depth, "PNG")


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def photo_tars(folder: Path, n_tars: int = 3, per_tar: int = 3) -> list[Path]:
    """Tars of JPEGs (and one PNG) of different sizes and aspects; keys `t<k>/img<i>`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(n_tars):
        members = []
        for i in range(per_tar):
            seed = 10 * k + i
            image = photo(40 + 8 * i, 60 + 10 * k, seed)
            fmt, ext = ("PNG", "png") if (k, i) == (0, 1) else ("JPEG", "jpg")
            members.append((f"t{k}/img{i}.{ext}", encode(image, fmt)))
        paths.append(write_tar(folder / f"photos-{k:06d}.tar", members))
    return paths


def rgbd_tars(folder: Path, n_tars: int = 2, per_tar: int = 4) -> list[Path]:
    """RGB-D tars: a JPEG and its 16-bit depth PNG per key (one .depth.npy in metres x1000)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(n_tars):
        members = []
        for i in range(per_tar):
            seed = 100 + 10 * k + i
            members.append((f"r{k}_{i}.jpg", encode(photo(30, 40, seed))))
            if (k, i) == (0, 0):
                raw = np.full((30, 40), 2000.0, np.float32)
                buffer = io.BytesIO()
                np.save(buffer, raw)
                members.append((f"r{k}_{i}.depth.npy", buffer.getvalue()))
            else:
                members.append((f"r{k}_{i}.depth.png", depth_png(30, 40, seed)))
        paths.append(write_tar(folder / f"rgbd-{k:06d}.tar", members))
    return paths


def truncate(path: Path) -> Path:
    """Cut the tar in the middle of its last member's data (as an interrupted upload does)."""
    with tarfile.open(path) as tar:
        last = tar.getmembers()[-1]
    data = path.read_bytes()
    path.write_bytes(data[: last.offset_data + last.size // 2])
    return path
