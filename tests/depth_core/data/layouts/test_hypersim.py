import math

import h5py
import numpy as np
import pytest
from PIL import Image

from depth_core.data.dataset import load_arrays
from depth_core.data.importers import (
    RGBDImportConfig,
    SkippedFile,
    import_rgbd_folder,
    read_rgbd_pair,
    scan_rgbd_pairs,
)
from depth_core.data.layouts.hypersim import CAMERA_CSV
from depth_core.data.manifest import read_manifest

H, W = 7, 9  # odd: one pixel sits on the optical axis
DISTANCE = 5.0
HYPERSIM = RGBDImportConfig(format="hypersim", height=H, width=W, depth_resize="nearest")


def _frames(scene_dir, cam="00"):
    images = scene_dir / "images"
    return (
        images / f"scene_cam_{cam}_final_preview",
        images / f"scene_cam_{cam}_final_hdf5",
        images / f"scene_cam_{cam}_geometry_hdf5",
    )


def _hdf5(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        handle.create_dataset("dataset", data=np.asarray(array, dtype=np.float16))
    return path


def _jpeg(path, value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((H, W, 3), value, np.uint8)).save(path, quality=95)
    return path


def _distance(value=DISTANCE):
    return np.full((H, W), value, dtype=np.float32)


def _focal():
    """Hypersim issue #9: f = (W/2) / tan(fov/2), fov 60 degrees horizontal."""
    return (W / 2) / math.tan(math.radians(60) / 2)


def _planar(x, y, distance=DISTANCE):
    ray = np.array([x - W / 2 + 0.5, y - H / 2 + 0.5, _focal()])
    return distance * _focal() / np.linalg.norm(ray)


@pytest.fixture
def scene(tmp_path):
    src = tmp_path / "downloads"
    preview, colour, geometry = _frames(src / "ai_001_002")
    _jpeg(preview / "frame.0000.tonemap.jpg")
    _hdf5(colour / "frame.0000.color.hdf5", np.full((H, W, 3), 0.5))
    _hdf5(geometry / "frame.0000.depth_meters.hdf5", _distance())
    return src


def test_distance_becomes_planar_depth_by_the_60_degree_camera(scene):
    pairs, skipped = scan_rgbd_pairs(scene, HYPERSIM)
    assert skipped == [] and len(pairs) == 1
    image, depth, mask = read_rgbd_pair(*pairs[0], HYPERSIM)
    assert image.shape == (H, W, 3) and depth.dtype == np.float32 and mask.all()
    centre = depth[H // 2, W // 2]
    assert centre == pytest.approx(DISTANCE, rel=1e-6)  # on the axis: distance = depth
    for y, x in [(0, 0), (0, W - 1), (H - 1, 0), (H - 1, W - 1)]:
        assert depth[y, x] == pytest.approx(_planar(x, y), rel=1e-6)
    assert depth[0, 0] < centre


def test_the_1024_wide_render_has_the_documented_focal_length():
    from depth_core.data.layouts.hypersim import planar_depth, standard_cam_from_uv

    distance = np.ones((768, 1024))
    depth = planar_depth(distance, standard_cam_from_uv(768, 1024))
    f = 886.81
    ray = np.hypot(np.hypot(-511.5, -383.5), f)
    assert depth[0, 0] == pytest.approx(f / ray, rel=1e-4)


def test_the_scene_camera_table_beside_the_scenes_wins(scene):
    """A 90-degree camera in metadata_camera_parameters.csv (M_cam_from_uv = diag(1, H/W, -1))."""
    columns = [f"M_cam_from_uv_{r}{c}" for r in range(3) for c in range(3)]
    values = [1.0, 0, 0, 0, H / W, 0, 0, 0, -1.0]
    rows = ["scene_name," + ",".join(columns), "ai_001_002," + ",".join(map(str, values))]
    (scene / CAMERA_CSV).write_text("\n".join(rows) + "\n")
    pairs, _ = scan_rgbd_pairs(scene, HYPERSIM)
    _, depth, _ = read_rgbd_pair(*pairs[0], HYPERSIM)
    u, v = -1 + 1 / W, 1 - 1 / H  # the top-left pixel centre
    expected = DISTANCE / math.sqrt(u**2 + (v * H / W) ** 2 + 1)
    assert depth[0, 0] == pytest.approx(expected, rel=1e-6)
    assert depth[H // 2, W // 2] == pytest.approx(DISTANCE, rel=1e-6)

    (scene / CAMERA_CSV).write_text("scene_name\nai_001_002\n")
    with pytest.raises(SkippedFile, match="lacks the columns M_cam_from_uv_00") as info:
        read_rgbd_pair(*pairs[0], HYPERSIM)
    assert info.value.code == "bad_camera"


def test_a_table_without_the_scene_falls_back_to_60_degrees(scene):
    columns = [f"M_cam_from_uv_{r}{c}" for r in range(3) for c in range(3)]
    rows = ["scene_name," + ",".join(columns), "ai_999_999," + ",".join(["1"] * 9)]
    (scene / CAMERA_CSV).write_text("\n".join(rows) + "\n")
    pairs, _ = scan_rgbd_pairs(scene, HYPERSIM)
    _, depth, _ = read_rgbd_pair(*pairs[0], HYPERSIM)
    assert depth[0, 0] == pytest.approx(_planar(0, 0), rel=1e-6)


def test_nan_is_invalid_and_the_depth_range_applies(scene):
    distance = _distance()
    distance[1, 2] = np.nan
    distance[2, 2] = 50.0
    _, _, geometry = _frames(scene / "ai_001_002")
    _hdf5(geometry / "frame.0000.depth_meters.hdf5", distance)
    config = HYPERSIM.model_copy(update={"max_depth": 10.0})
    pairs, _ = scan_rgbd_pairs(scene, config)
    _, depth, mask = read_rgbd_pair(*pairs[0], config)
    assert not mask[1, 2] and depth[1, 2] == 0
    assert not mask[2, 2] and depth[2, 2] == 0  # beyond max_depth
    assert mask.sum() == H * W - 2


def test_the_jpeg_preview_is_preferred_and_hdf5_colour_is_tonemapped(scene):
    pairs, _ = scan_rgbd_pairs(scene, HYPERSIM)
    assert pairs[0][0].name == "frame.0000.tonemap.jpg"
    image, _, _ = read_rgbd_pair(*pairs[0], HYPERSIM)
    assert abs(int(image.astype(int).mean()) - 100) <= 1

    preview, colour, _ = _frames(scene / "ai_001_002")
    (preview / "frame.0000.tonemap.jpg").unlink()
    pairs, _ = scan_rgbd_pairs(scene, HYPERSIM)
    assert pairs[0][0] == colour / "frame.0000.color.hdf5"
    image, _, _ = read_rgbd_pair(*pairs[0], HYPERSIM)
    # grey 0.5: brightness 0.5 is the 90th percentile, scaled to 0.8 ** 2.2, gamma 1/2.2 -> 0.8
    assert image.dtype == np.uint8 and (image == 204).all()


def test_pairing_skips_files_without_a_partner_and_ignores_other_renders(scene):
    preview, _, geometry = _frames(scene / "ai_001_002")
    _jpeg(preview / "frame.0001.tonemap.jpg")  # no depth
    _hdf5(geometry / "frame.0002.depth_meters.hdf5", _distance())  # no image
    _hdf5(geometry / "frame.0000.normal_cam.hdf5", np.zeros((H, W, 3)))  # not part of pairing
    (geometry / "frame.0003.depth_meters.hdf5").write_bytes(b"not hdf5")  # corrupt
    _jpeg(preview / "frame.0003.tonemap.jpg")
    stats = import_rgbd_folder(scene, scene.parent / "out", HYPERSIM, progress=False)
    assert stats.n_samples == 1
    assert stats.skipped_by_code == {"no_depth": 1, "no_image": 1, "unreadable": 1}
    by_file = {s["file"]: s for s in stats.skipped}
    base = "ai_001_002/images/"
    assert by_file[base + "scene_cam_00_final_preview/frame.0001.tonemap.jpg"]["code"] == "no_depth"
    assert by_file[base + "scene_cam_00_geometry_hdf5/frame.0002.depth_meters.hdf5"]["code"] == (
        "no_image"
    )
    corrupt = by_file[base + "scene_cam_00_final_preview/frame.0003.tonemap.jpg"]
    assert "cannot read HDF5 file" in corrupt["reason"]

    manifest = read_manifest(scene.parent / "out")
    assert manifest["id"].tolist() == [base + "scene_cam_00_final_preview/frame.0000.tonemap.jpg"]
    assert manifest["depth_source"].tolist() == [
        base + "scene_cam_00_geometry_hdf5/frame.0000.depth_meters.hdf5"
    ]
    depth = load_arrays(scene.parent / "out")["depth"][0]
    assert depth[0, 0] == pytest.approx(_planar(0, 0), rel=1e-6)


def test_an_hdf5_file_without_its_dataset_is_unreadable(scene):
    _, _, geometry = _frames(scene / "ai_001_002")
    with h5py.File(geometry / "frame.0000.depth_meters.hdf5", "w") as handle:
        handle.create_dataset("other", data=np.zeros((H, W)))
    pairs, _ = scan_rgbd_pairs(scene, HYPERSIM)
    with pytest.raises(SkippedFile, match="no HDF5 dataset 'dataset'") as info:
        read_rgbd_pair(*pairs[0], HYPERSIM)
    assert info.value.code == "unreadable"
