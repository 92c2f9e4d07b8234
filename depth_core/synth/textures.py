"""Texture bank: tileable patterns and photo crops packed into one mip-mapped atlas.

Every surface of a rendered scene looks up its albedo here. A tile is periodic on the unit
square, so surfaces repeat it by wrapping their coordinates; texture coordinates are in
object or world units, which is what makes a texture's image-space scale shrink with distance.
Far and grazing surfaces read coarser mip levels, as a camera's pixel integrates them, instead
of aliasing into noise.

Tiles hold either a *weight* pattern (grey, blended between two per-material colours, so a
small bank yields unlimited colourings) or linear RGB (photos, roads). Tile 0 is always flat
white: a material on tile 0 shows its `color_b` exactly, which tests rely on.

The synthetic bank is procedural only (checker, stripes, fractal noise, gradients, bricks,
planks, marble, cells...). The target bank cuts most tiles from the real photographs that
ship inside scikit-image, so the two domains differ in texture statistics.
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

GRID_COLUMNS = 16
PADDING = 2

# Photographs that scikit-image ships inside its wheel (no download); checked to load offline.
COLOR_PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "stereo_motorcycle",
    "immunohistochemistry",
)
GREY_PHOTOS = ("brick", "grass", "gravel", "camera", "coins", "moon", "clock")
DECAL_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "stereo_motorcycle", "text", "page")


@contextlib.contextmanager
def intra_op_threads(threads: int | None) -> Iterator[None]:
    """Run with `threads` torch intra-op threads, restoring the previous setting afterwards
    (None: leave it alone).

    Texture building and rendering issue thousands of small and mid-sized tensor operations.
    Measured on a shared 2-core machine, two OpenMP threads made them 5-35x slower than one,
    while separate single-threaded processes scale (see benchmarks/bench_render.py).
    """
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# --------------------------------------------------------------------------- colour helpers


def srgb_to_linear(values: np.ndarray | torch.Tensor):
    """sRGB-encoded values in [0, 1] to linear light (the exact piecewise sRGB curve)."""
    if isinstance(values, torch.Tensor):
        return torch.where(
            values <= 0.04045, values / 12.92, ((values.clamp(min=0) + 0.055) / 1.055) ** 2.4
        )
    values = np.asarray(values, dtype=np.float32)
    return np.where(
        values <= 0.04045, values / 12.92, ((np.maximum(values, 0) + 0.055) / 1.055) ** 2.4
    ).astype(np.float32)


def linear_to_srgb(values: torch.Tensor) -> torch.Tensor:
    """Linear light in [0, 1] to sRGB encoding (what 8-bit images store)."""
    values = values.clamp(0.0, 1.0)
    return torch.where(
        values <= 0.0031308, values * 12.92, 1.055 * values.clamp(min=1e-8) ** (1 / 2.4) - 0.055
    )


def _srgb_scalar_to_linear(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def hsv_to_linear(hue: float, sat: float, val: float) -> np.ndarray:
    """An HSV colour (all in [0, 1], as a person picks it on screen) as linear RGB (3,)."""
    h = (hue % 1.0) * 6.0
    i = int(h) % 6
    f = h - int(h)
    p, q, t = val * (1 - sat), val * (1 - sat * f), val * (1 - sat * (1 - f))
    rgb = ((val, t, p), (q, val, p), (p, val, t), (p, q, val), (t, p, val), (val, p, q))[i]
    return np.array([_srgb_scalar_to_linear(c) for c in rgb], dtype=np.float32)


# --------------------------------------------------------------------------- periodic patterns


def _coords(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Texel-centre coordinates in [0, 1) on both axes, (x, y) each (size, size)."""
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size
    y, x = np.meshgrid(axis, axis, indexing="ij")
    return x, y


def _stretch(values: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Rescale to [0, 1] by robust percentiles (one spike cannot flatten the pattern)."""
    lo, hi = np.percentile(values, [low, high])
    return np.clip((values - lo) / max(hi - lo, 1e-6), 0.0, 1.0).astype(np.float32)


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / max(edge1 - edge0, 1e-6), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def spectral_noise(
    rng: np.random.Generator,
    size: int,
    beta: float,
    stretch: tuple[float, float] = (1.0, 1.0),
    min_frequency: float = 1.0,
) -> np.ndarray:
    """Periodic fractal noise with a 1/f^beta power spectrum, in [0, 1].

    beta ~1 is rough (gravel, carpet), ~3 is smooth blobs (value noise). `stretch` makes it
    anisotropic (wood grain, grass blades). Periodic by construction (integer frequencies).
    """
    freqs = np.fft.fftfreq(size) * size
    fy, fx = np.meshgrid(freqs, freqs, indexing="ij")
    radius = np.sqrt((fx / stretch[0]) ** 2 + (fy / stretch[1]) ** 2)
    amplitude = np.where(radius >= min_frequency, np.maximum(radius, 1e-6) ** (-beta / 2), 0.0)
    spectrum = amplitude * (
        rng.standard_normal((size, size)) + 1j * rng.standard_normal((size, size))
    )
    return _stretch(np.fft.ifft2(spectrum).real)


def _checker(rng, size):
    x, y = _coords(size)
    n = int(rng.choice([1, 2, 4, 8]))
    if rng.random() < 0.3:  # diagonal checker, still periodic
        u, v = (x + y) * n, (x - y) * n
    else:
        u, v = x * n, y * n
    return ((np.floor(u * 2) + np.floor(v * 2)) % 2).astype(np.float32)


def _stripes(rng, size):
    x, y = _coords(size)
    n = int(rng.choice([1, 2, 3, 4, 6, 8]))
    orient = rng.integers(3)
    phase = [x, y, x + y][orient] * n
    duty = rng.uniform(0.2, 0.8)
    soft = rng.choice([0.01, 0.05, 0.2])
    wave = np.abs(phase % 1.0 - 0.5) * 2  # 0 at stripe centre, 1 at its edge
    return 1.0 - _smoothstep(duty - soft, duty + soft, wave)


def _noise(rng, size):
    beta = rng.uniform(1.0, 3.2)
    values = spectral_noise(rng, size, beta)
    if rng.random() < 0.3:  # ridged / contrasty variants
        values = _stretch(np.abs(values - 0.5))
    return values


def _gradient(rng, size):
    x, y = _coords(size)
    axis = [x, y, (x + y) % 1.0][rng.integers(3)]
    return (0.5 - 0.5 * np.cos(2 * np.pi * axis)).astype(np.float32)


def _bricks(rng, size, offset_rows: bool = True):
    x, y = _coords(size)
    rows = int(rng.choice([2, 4, 6, 8]))
    cols = int(rng.choice([1, 2, 3, 4])) if offset_rows else rows
    mortar = rng.uniform(0.03, 0.09)
    row = np.floor(y * rows)
    shift = np.where(row % 2 == 1, 0.5, 0.0) if offset_rows else 0.0
    u = (x * cols + shift) % cols
    col = np.floor(u)
    fu, fv = u - col, y * rows - row
    edge = np.minimum(np.minimum(fu, 1 - fu) * rows / cols, np.minimum(fv, 1 - fv))
    body = 1.0 - _smoothstep(mortar * 0.5, mortar, edge)
    tone = rng.uniform(0.55, 1.0, size=(rows, cols))[row.astype(int), col.astype(int) % cols]
    grain = spectral_noise(rng, size, 1.2) * 0.25
    return np.clip((1 - body) * (tone - grain * 0.5) + body * 0.05, 0, 1).astype(np.float32)


def _planks(rng, size):
    _, y = _coords(size)
    count = int(rng.choice([2, 3, 4, 6]))
    plank = np.floor(y * count)
    fv = y * count - plank
    seam = _smoothstep(0.0, 0.06, np.minimum(fv, 1 - fv))
    tone = rng.uniform(0.5, 1.0, size=count)[plank.astype(int)]
    grain = spectral_noise(rng, size, 2.0, stretch=(1.0, 12.0))
    return np.clip(seam * (0.55 * tone + 0.45 * grain), 0, 1).astype(np.float32)


def _marble(rng, size):
    x, y = _coords(size)
    turbulence = spectral_noise(rng, size, 2.2) - 0.5
    k = int(rng.choice([1, 2, 3]))
    return _stretch(np.abs(np.sin(np.pi * (k * (x + y) + rng.uniform(1.5, 4) * turbulence))) ** 0.5)


def _cells(rng, size):
    """Periodic Worley noise: cobbles, pebbles, cracked paint."""
    x, y = _coords(size)
    count = int(rng.integers(6, 40))
    pts = rng.random((count, 2)).astype(np.float32)
    dx = np.abs(x[..., None] - pts[:, 0])
    dy = np.abs(y[..., None] - pts[:, 1])
    dist = np.sqrt(np.minimum(dx, 1 - dx) ** 2 + np.minimum(dy, 1 - dy) ** 2)
    dist.sort(axis=-1)
    if rng.random() < 0.5:
        values = dist[..., 1] - dist[..., 0]  # cell borders
    else:
        values = dist[..., 0]
    return _stretch(values)


def _dots(rng, size):
    x, y = _coords(size)
    n = int(rng.choice([2, 3, 4, 6]))
    fu, fv = (x * n) % 1.0 - 0.5, (y * n) % 1.0 - 0.5
    radius = rng.uniform(0.15, 0.42)
    return (1.0 - _smoothstep(radius - 0.03, radius + 0.03, np.sqrt(fu**2 + fv**2))).astype(
        np.float32
    )


def _leaves(rng, size):
    blobs = spectral_noise(rng, size, 1.6, min_frequency=3.0)
    fine = spectral_noise(rng, size, 0.8, stretch=(1.0, rng.uniform(1.0, 4.0)))
    return _stretch(0.6 * blobs + 0.4 * fine)


def _windows(rng, size):
    """Facade: a grid of dark windows on a lighter wall."""
    x, y = _coords(size)
    n = int(rng.choice([1, 2, 3]))
    fu, fv = (x * n) % 1.0, (y * n) % 1.0
    w, h = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7)
    inside = (np.abs(fu - 0.5) < w / 2) & (np.abs(fv - 0.5) < h / 2)
    noise = spectral_noise(rng, size, 1.5) * 0.15
    return np.where(inside, 0.1 + noise, 0.85 + noise).clip(0, 1).astype(np.float32)


def _clouds(rng, size):
    """Smooth, blobby noise for cloud cover."""
    return spectral_noise(rng, size, rng.uniform(2.6, 3.4))


def _plain(rng, size):
    """Nearly uniform paint or plastic: the most common real surface."""
    return (0.9 + 0.1 * spectral_noise(rng, size, rng.uniform(1.5, 3.0))).astype(np.float32)


def _road(rng, size) -> np.ndarray:
    """Linear RGB asphalt across one lane pair: u spans the road, v runs along it."""
    x, y = _coords(size)
    base = rng.uniform(0.02, 0.07)
    asphalt = base * (0.75 + 0.5 * spectral_noise(rng, size, 1.0))
    paint = rng.uniform(0.45, 0.7)
    edges = (np.abs(x - 0.04) < 0.012) | (np.abs(x - 0.96) < 0.012)
    centre = (np.abs(x - 0.5) < 0.01) & ((y % 0.5) < rng.uniform(0.2, 0.35))
    lines = edges | centre
    rgb = np.repeat(asphalt[..., None], 3, axis=-1)
    line_colour = np.array([paint, paint, paint * rng.choice([1.0, 0.3])], dtype=np.float32)
    rgb = np.where(lines[..., None], line_colour, rgb)
    return rgb.astype(np.float32)


PROCEDURAL_PATTERNS = {
    "checker": _checker,
    "stripes": _stripes,
    "noise": _noise,
    "gradient": _gradient,
    "bricks": _bricks,
    "tiles": functools.partial(_bricks, offset_rows=False),
    "planks": _planks,
    "marble": _marble,
    "cells": _cells,
    "dots": _dots,
    "leaves": _leaves,
    "windows": _windows,
    "plain": _plain,
    "clouds": _clouds,
}
# How many variants of each pattern a bank holds.
PROCEDURAL_COUNTS = {
    "checker": 8,
    "stripes": 10,
    "noise": 16,
    "gradient": 4,
    "bricks": 8,
    "tiles": 6,
    "planks": 8,
    "marble": 6,
    "cells": 8,
    "dots": 4,
    "leaves": 8,
    "windows": 6,
    "plain": 10,
    "clouds": 4,
}


# --------------------------------------------------------------------------- photo tiles


def _load_photo(name: str) -> np.ndarray | None:
    """A scikit-image sample photo as float32 in [0, 1], (H, W) or (H, W, 3); None if absent."""
    import skimage.data

    loader = getattr(skimage.data, name, None)
    if loader is None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = loader()
    except Exception:  # noqa: BLE001 - optional data files may be missing from a build
        return None
    if isinstance(image, tuple):  # stereo pairs: keep the left view
        image = image[0]
    image = np.asarray(image)
    if image.ndim == 3:
        image = image[..., :3]
    return image.astype(np.float32) / (255.0 if image.dtype == np.uint8 else max(image.max(), 1))


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    """Area-resample an (H, W[, 3]) float image to (size, size[, 3])."""
    tensor = torch.from_numpy(np.ascontiguousarray(image))
    tensor = tensor[None, None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)[None]
    out = F.interpolate(
        tensor, size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    out = out[0, 0] if image.ndim == 2 else out[0].permute(1, 2, 0)
    return out.numpy().clip(0, 1)


def _photo_crop(rng, photo: np.ndarray, size: int) -> np.ndarray:
    h, w = photo.shape[:2]
    side = int(rng.integers(min(h, w) // 6, min(h, w) // 2 + 1))
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    return _resize(photo[top : top + side, left : left + side], size)


def _center_square(photo: np.ndarray) -> np.ndarray:
    h, w = photo.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return photo[top : top + side, left : left + side]


# --------------------------------------------------------------------------- the bank


@dataclass
class TextureBank:
    """All tiles of one domain in one atlas tensor, with the layout needed to sample them."""

    atlas: torch.Tensor  # (1, 3, H, W) float32
    tile_size: int
    num_tiles: int
    level_sizes: tuple[int, ...]
    level_offsets: tuple[int, ...]
    groups: dict[str, tuple[int, ...]]
    rgb: tuple[bool, ...]  # per tile: linear RGB (True) or a two-colour weight pattern
    mirrored: torch.Tensor  # (T,) bool: photo crops repeat mirrored (seamless without blending)
    _device_copies: dict[str, TextureBank] = field(default_factory=dict, repr=False)

    @property
    def levels(self) -> int:
        return len(self.level_sizes)

    def to(self, device: str | torch.device) -> TextureBank:
        """The same bank with its atlas on `device` (cached, so repeated calls are free)."""
        key = str(torch.device(device))
        if key == str(self.atlas.device):
            return self
        if key not in self._device_copies:
            self._device_copies[key] = TextureBank(
                self.atlas.to(device),
                self.tile_size,
                self.num_tiles,
                self.level_sizes,
                self.level_offsets,
                self.groups,
                self.rgb,
                self.mirrored.to(device),
            )
        return self._device_copies[key]

    def sample(
        self, tile: torch.Tensor, u: torch.Tensor, v: torch.Tensor, lod: torch.Tensor
    ) -> torch.Tensor:
        """Trilinear (bilinear + mip blend) lookup. tile ids (float or integer), coordinates in
        tile periods, level of detail (log2 of texels per pixel at level 0), all (n,) -> (3, n).

        Coordinates are computed with float arithmetic only (mip level sizes are powers of two
        and level offsets have a closed form), which is much faster on CPU than gathers.
        """
        if tile.numel() == 0:
            return torch.zeros(3, 0, device=self.atlas.device)
        tile = tile.to(u.dtype)
        lod = lod.clamp(0.0, self.levels - 1.0)
        level0 = lod.floor()
        level1 = (level0 + 1.0).clamp(max=self.levels - 1.0)
        fraction = lod - level0
        row = torch.floor(tile * (1.0 / GRID_COLUMNS))
        col = tile - row * GRID_COLUMNS
        fu, fv = u - u.floor(), v - v.floor()
        if bool(self.mirrored.any()):
            mirror = self.mirrored.to(u.dtype).take(tile.long())
            fu = fu + mirror * ((1.0 - (1.0 - (u - 2.0 * torch.floor(u * 0.5))).abs()) - fu)
            fv = fv + mirror * ((1.0 - (1.0 - (v - 2.0 * torch.floor(v * 0.5))).abs()) - fv)
        height, width = self.atlas.shape[-2:]
        rows = math.ceil(self.num_tiles / GRID_COLUMNS)
        samples = []
        for level in (level0, level1):
            size = self.tile_size * torch.exp2(-level)
            cell = size + 2 * PADDING
            # top of level l: rows * sum_{i<l} (S / 2^i + 2p) = rows * (2 S (1 - 2^-l) + 2 p l)
            top = rows * (2.0 * (self.tile_size - size) + 2.0 * PADDING * level)
            grid = torch.empty(u.shape[0], 2, device=u.device, dtype=u.dtype)
            grid[:, 0] = (col * cell + PADDING + fu * size) * (2.0 / width) - 1.0
            grid[:, 1] = (top + row * cell + PADDING + fv * size) * (2.0 / height) - 1.0
            out = F.grid_sample(
                self.atlas,
                grid.view(1, 1, -1, 2),
                mode="bilinear",
                padding_mode="border",
                align_corners=False,
            )
            samples.append(out.view(3, -1))
        return samples[0] + (samples[1] - samples[0]) * fraction


def _pad_border(tile: torch.Tensor, mirror: bool) -> torch.Tensor:
    """(3, s, s) -> (3, s + 2p, s + 2p) with periodic (or mirrored) borders matching how the
    tile repeats, so bilinear reads at its edges never bleed into a neighbouring tile."""
    size = tile.shape[-1]
    index = torch.arange(-PADDING, size + PADDING)
    if mirror:
        index = index % (2 * size)
        index = torch.where(index >= size, 2 * size - 1 - index, index)
    else:
        index = index % size  # wraps even when size < PADDING
    return tile[:, index][:, :, index]


def _assemble(
    tiles: list[np.ndarray], mirrored: list[bool], tile_size: int
) -> tuple[torch.Tensor, tuple, tuple]:
    """Pack (s, s) weight or (s, s, 3) RGB tiles and all their mip levels into one atlas."""
    stack = []
    for tile in tiles:
        t = torch.from_numpy(np.ascontiguousarray(tile, dtype=np.float32))
        stack.append(t[None].expand(3, -1, -1) if t.ndim == 2 else t.permute(2, 0, 1))
    level0 = torch.stack(stack)  # (T, 3, s, s)
    rows = math.ceil(len(tiles) / GRID_COLUMNS)
    levels, sizes, offsets, offset = [], [], [], 0
    current = level0
    while True:
        size = current.shape[-1]
        sizes.append(size)
        offsets.append(offset)
        levels.append(current)
        offset += rows * (size + 2 * PADDING)
        if size == 1:
            break
        current = F.avg_pool2d(current, 2)  # 2x2 averaging keeps periodic/mirrored tiling exact
    width = GRID_COLUMNS * (tile_size + 2 * PADDING)
    atlas = torch.zeros(3, offset, width)
    for level, size, top in zip(levels, sizes, offsets):
        cell = size + 2 * PADDING
        for index in range(level.shape[0]):
            r, c = divmod(index, GRID_COLUMNS)
            atlas[:, top + r * cell : top + (r + 1) * cell, c * cell : (c + 1) * cell] = (
                _pad_border(level[index], mirrored[index])
            )
    return atlas[None].contiguous(), tuple(sizes), tuple(offsets)


@functools.lru_cache(maxsize=4)
def build_texture_bank(
    domain: str = "synthetic", seed: int = 0, tile_size: int = 64
) -> TextureBank:
    """The deterministic texture bank of a domain ("synthetic" or "target"), built once per
    process, single-threaded (see `intra_op_threads`).

    Raises ValueError for an unknown domain or a tile size that is not a power of two >= 8.
    """
    with intra_op_threads(1):
        return _build_texture_bank(domain, seed, tile_size)


def _build_texture_bank(domain: str, seed: int, tile_size: int) -> TextureBank:
    if domain not in ("synthetic", "target"):
        raise ValueError(f"domain must be 'synthetic' or 'target', got {domain!r}")
    if tile_size < 8 or tile_size & (tile_size - 1):
        raise ValueError(f"tile_size must be a power of two >= 8, got {tile_size}")
    rng = np.random.default_rng([seed, 0 if domain == "synthetic" else 1])
    tiles: list[np.ndarray] = [np.ones((tile_size, tile_size), np.float32)]
    groups: dict[str, list[int]] = {"flat": [0]}
    rgb, mirrored = [False], [False]

    def add(group: str, tile: np.ndarray, mirror: bool = False) -> None:
        groups.setdefault(group, []).append(len(tiles))
        rgb.append(tile.ndim == 3)
        mirrored.append(mirror)
        tiles.append(tile.astype(np.float32))

    scale = 1 if domain == "synthetic" else 2  # the target keeps fewer procedural variants
    for name, make in PROCEDURAL_PATTERNS.items():
        for _ in range(max(1, PROCEDURAL_COUNTS[name] // scale)):
            add(name, make(rng, tile_size))
    for _ in range(3):
        add("road", _road(rng, tile_size))
    if domain == "target":
        _add_photo_tiles(rng, tile_size, add)
    atlas, sizes, offsets = _assemble(tiles, mirrored, tile_size)
    return TextureBank(
        atlas=atlas,
        tile_size=tile_size,
        num_tiles=len(tiles),
        level_sizes=sizes,
        level_offsets=offsets,
        groups={k: tuple(v) for k, v in groups.items()},
        rgb=tuple(rgb),
        mirrored=torch.tensor(mirrored),
    )


def _add_photo_tiles(rng: np.random.Generator, size: int, add) -> None:
    """Crops of real photographs: colour crops, grey material crops (tinted per surface),
    and whole pictures used as labels/posters on box faces."""
    loaded = 0
    for name in COLOR_PHOTOS:
        photo = _load_photo(name)
        if photo is None or photo.ndim != 3:
            continue
        loaded += 1
        for _ in range(8):
            add("photo", srgb_to_linear(_photo_crop(rng, photo, size)), mirror=True)
    for name in GREY_PHOTOS:
        photo = _load_photo(name)
        if photo is None:
            continue
        loaded += 1
        if photo.ndim == 3:
            photo = photo.mean(axis=-1)
        group = {"brick": "photo_bricks", "grass": "photo_grass", "gravel": "photo_gravel"}.get(
            name, "photo_grey"
        )
        for _ in range(6 if group != "photo_grey" else 3):
            add(group, _stretch(_photo_crop(rng, photo, size)), mirror=True)
    for name in DECAL_PHOTOS:
        photo = _load_photo(name)
        if photo is None:
            continue
        square = _resize(_center_square(photo), size)
        if square.ndim == 2:
            add("decal_grey", _stretch(square), mirror=True)
        else:
            add("decal", srgb_to_linear(square), mirror=True)
    if loaded == 0:
        raise RuntimeError(
            "the target texture bank needs scikit-image's bundled sample photos; "
            "none could be loaded"
        )
