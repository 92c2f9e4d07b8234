"""Hypersim: `ai_XXX_YYY/images/scene_cam_NN_*/frame.IIII.*` per scene and camera.

`frame.IIII.depth_meters.hdf5` holds the distance from the camera centre along each pixel's ray
(NaN where nothing was hit), not planar depth: planar depth = distance * |ray_z| / |ray|.
The rays come from the scene's row of Hypersim's `metadata_camera_parameters.csv` (its
`M_cam_from_uv_*` columns, which include the tilt-shift of some scenes) when that file lies
beside the scene folders; otherwise from the standard camera, 60 degrees of horizontal field of
view: the ray through pixel (x, y) is (x - W/2 + 0.5, y - H/2 + 0.5, f), f = (W/2) / tan(30 deg)
(886.81 px for the 1024 x 768 renders).
Colour is the tonemapped JPEG preview when present, else the linear HDR colour HDF5 tonemapped
as Hypersim's own scripts do (gamma 1/2.2, the 90th brightness percentile at 0.8).
"""

from __future__ import annotations

import csv
import math
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from depth_core.data.layouts.base import RGBDLayout, masked_depth, read_rgb
from depth_core.data.source_files import SkippedFile

FIELD_OF_VIEW_DEG = 60.0
CAMERA_CSV = "metadata_camera_parameters.csv"
GAMMA = 1.0 / 2.2
BRIGHTNESS_PERCENTILE = 90.0
BRIGHTNESS_TARGET = 0.8
_DARK = 1e-4  # Hypersim's threshold below which a frame is tonemapped to black
_CAMERA_COLUMNS = [f"M_cam_from_uv_{row}{col}" for row in range(3) for col in range(3)]
_FRAME = r"(?:(.*)/)?(ai_\d+_\d+)/images/scene_cam_(\d+)_{folder}/frame\.(\d+)\.{name}"


def standard_cam_from_uv(height: int, width: int) -> np.ndarray:
    """Hypersim's matrix from image coordinates (u right, v up, both in [-1, 1]) to camera rays
    for the standard 60-degree camera (the camera looks down -z)."""
    half_width = math.tan(math.radians(FIELD_OF_VIEW_DEG) / 2.0)
    return np.diag([half_width, half_width * height / width, -1.0])


def planar_depth(distance: np.ndarray, cam_from_uv: np.ndarray) -> np.ndarray:
    """Depth along the optical axis from distance to the camera centre, per pixel centre."""
    height, width = distance.shape
    u = (np.arange(width) + 0.5) * 2.0 / width - 1.0
    v = 1.0 - (np.arange(height) + 0.5) * 2.0 / height
    uu, vv = np.meshgrid(u, v)
    rays = np.stack([uu, vv, np.ones_like(uu)], axis=-1) @ np.asarray(cam_from_uv).T
    return distance * np.abs(rays[..., 2]) / np.linalg.norm(rays, axis=-1)


def scene_cam_from_uv(depth_path: Path, height: int, width: int) -> np.ndarray:
    """The scene's camera rays from the CSV beside the scene folders, else the standard one."""
    scene_dir = depth_path.parents[2]
    table = scene_dir.parent / CAMERA_CSV
    if not table.is_file():
        return standard_cam_from_uv(height, width)
    row = _camera_rows(str(table), table.stat().st_mtime_ns).get(scene_dir.name)
    if row is None:
        return standard_cam_from_uv(height, width)
    values = []
    for column in _CAMERA_COLUMNS:
        try:
            values.append(float(row[column]))
        except (TypeError, ValueError):
            raise SkippedFile(
                "bad_camera",
                f"{table}: {column} of scene {scene_dir.name} is {row[column]!r}, not a number",
            ) from None
    matrix = np.array(values).reshape(3, 3)
    if not np.isfinite(matrix).all():
        raise SkippedFile("bad_camera", f"{table}: scene {scene_dir.name} has a non-finite camera")
    return matrix


@lru_cache(maxsize=4)
def _camera_rows(table: str, _mtime_ns: int) -> dict[str, dict[str, str]]:
    """The CSV's rows by scene name (cached per file version: every frame reads it)."""
    try:
        with open(table, newline="") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            columns = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SkippedFile("bad_camera", f"cannot read {table}: {exc}") from exc
    missing = [c for c in ["scene_name", *_CAMERA_COLUMNS] if c not in columns]
    if missing:
        raise SkippedFile("bad_camera", f"{table} lacks the columns {', '.join(missing)}")
    return {row["scene_name"]: row for row in rows}


def read_hdf5_raster(path: Path) -> np.ndarray:
    """The array Hypersim stores in a frame's HDF5 file (its dataset "dataset"), as float64."""
    import h5py  # only Hypersim needs HDF5

    try:
        with h5py.File(path, "r") as handle:
            if "dataset" not in handle:
                raise SkippedFile(
                    "unreadable",
                    f"{path} has no HDF5 dataset 'dataset' (found: {', '.join(handle) or 'none'})",
                )
            array = handle["dataset"][()]
    except SkippedFile:
        raise
    except Exception as exc:  # h5py raises OSError, KeyError, TypeError... for bad files
        raise SkippedFile("unreadable", f"cannot read HDF5 file {path}: {exc}") from exc
    real = np.issubdtype(array.dtype, np.number) and not np.iscomplexobj(array)
    if not (isinstance(array, np.ndarray) and real):
        dtype = array.dtype if isinstance(array, np.ndarray) else type(array).__name__
        raise SkippedFile(
            "unreadable", f"{path}: dataset 'dataset' holds {dtype}, not real-valued numbers"
        )
    return array.astype(np.float64)


def tonemap(rgb: np.ndarray) -> np.ndarray:
    """Linear HDR colour to uint8 as Hypersim's preview images are made: scale so the 90th
    percentile of brightness (0.3 R + 0.59 G + 0.11 B) lands at 0.8 after gamma 1/2.2."""
    finite = np.isfinite(rgb).all(axis=2)
    rgb = np.where(finite[..., None], rgb, 0.0)
    brightness = rgb @ np.array([0.3, 0.59, 0.11])
    scale = 1.0
    if finite.any():
        current = float(np.percentile(brightness[finite], BRIGHTNESS_PERCENTILE))
        scale = 0.0 if current < _DARK else BRIGHTNESS_TARGET ** (1.0 / GAMMA) / current
    mapped = np.clip(np.power(np.maximum(scale * rgb, 0.0), GAMMA), 0.0, 1.0)
    return (mapped * 255.0 + 0.5).astype(np.uint8)


def read_color(path: Path) -> np.ndarray:
    if path.suffix.lower() != ".hdf5":
        return read_rgb(path)
    rgb = read_hdf5_raster(path)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise SkippedFile("unreadable", f"colour {path} has shape {rgb.shape}; expected (H, W, 3)")
    return tonemap(rgb)


def read_pair(image_path: Path, depth_path: Path):
    distance = read_hdf5_raster(depth_path)
    if distance.ndim != 2:
        raise SkippedFile(
            "unreadable", f"depth map {depth_path} has shape {distance.shape}; expected (H, W)"
        )
    image = read_color(image_path)
    cam_from_uv = scene_cam_from_uv(depth_path, *distance.shape)
    with np.errstate(invalid="ignore"):
        depth = planar_depth(distance, cam_from_uv)
    return (image, *masked_depth(depth, np.isfinite(distance)))


LAYOUT = RGBDLayout(
    name="hypersim",
    images=(
        re.compile(_FRAME.format(folder="final_preview", name=r"tonemap\.jpg")),
        re.compile(_FRAME.format(folder="final_hdf5", name=r"color\.hdf5")),
    ),
    depth=re.compile(_FRAME.format(folder="geometry_hdf5", name=r"depth_meters\.hdf5")),
    read=read_pair,
    image_file=(
        "ai_XXX_YYY/images/scene_cam_NN_final_preview/frame.IIII.tonemap.jpg "
        "(else scene_cam_NN_final_hdf5/frame.IIII.color.hdf5)"
    ),
    depth_file="ai_XXX_YYY/images/scene_cam_NN_geometry_hdf5/frame.IIII.depth_meters.hdf5",
    convention="HDF5 distance to the camera centre in metres, converted to planar depth; NaN invalid",
)
