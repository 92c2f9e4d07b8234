import numpy as np
import pytest
from PIL import Image

from depth_core.data.importers import (
    RGBDImportConfig,
    SkippedFile,
    import_rgbd_folder,
    read_rgbd_pair,
    scan_rgbd_pairs,
)
from depth_core.data.manifest import read_manifest

H, W = 4, 6
VKITTI2 = RGBDImportConfig(format="vkitti2", height=H, width=W, depth_resize="nearest")


def _frame_dirs(src, scene="Scene01", variation="clone", camera="Camera_0"):
    frames = src / scene / variation / "frames"
    return frames / "rgb" / camera, frames / "depth" / camera


def _rgb(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((H, W, 3), 120, np.uint8)).save(path, quality=95)


def _depth_png(path, centimetres):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(centimetres, dtype=np.uint16)).save(path)


@pytest.fixture
def vkitti(tmp_path):
    src = tmp_path / "vkitti2"
    raw = np.full((H, W), 1234, dtype=np.uint16)
    raw[0, :] = 65535  # sky
    raw[1, 0] = 0
    for camera in ("Camera_0", "Camera_1"):
        rgb, depth = _frame_dirs(src, camera=camera)
        _rgb(rgb / "rgb_00000.jpg")
        _depth_png(depth / "depth_00000.png", raw)
    return src


def test_centimetres_become_metres_and_the_sky_is_invalid(vkitti):
    pairs, skipped = scan_rgbd_pairs(vkitti, VKITTI2)
    assert skipped == [] and len(pairs) == 2
    assert {p[0].parent.name for p in pairs} == {"Camera_0", "Camera_1"}
    image, depth, mask = read_rgbd_pair(*pairs[0], VKITTI2)
    assert image.shape == (H, W, 3)
    assert depth.dtype == np.float32 and depth[2, 3] == np.float32(12.34)
    assert not mask[0].any() and (depth[0] == 0).all()  # 65535 = 655.35 m sky
    assert not mask[1, 0] and mask.sum() == H * W - W - 1


def test_pairs_across_variations_and_partners_missing(vkitti):
    rgb, depth = _frame_dirs(vkitti, variation="fog")
    _rgb(rgb / "rgb_00000.jpg")
    _depth_png(depth / "depth_00000.png", np.full((H, W), 500))
    _rgb(rgb / "rgb_00001.jpg")  # no depth
    _depth_png(depth / "depth_00002.png", np.full((H, W), 500))  # no image
    _rgb(rgb.parent.parent / "classSegmentation" / "Camera_0" / "classgt_00000.png")  # ignored
    Image.fromarray(np.full((H, W, 3), 9, np.uint8)).save(depth / "depth_00003.png")  # RGB
    _rgb(rgb / "rgb_00003.jpg")
    stats = import_rgbd_folder(vkitti, vkitti.parent / "out", VKITTI2, progress=False)
    assert stats.n_samples == 3
    assert stats.skipped_by_code == {"bad_depth": 1, "no_depth": 1, "no_image": 1}
    by_code = {s["code"]: s for s in stats.skipped}
    assert by_code["no_depth"]["file"] == "Scene01/fog/frames/rgb/Camera_0/rgb_00001.jpg"
    assert by_code["no_image"]["file"] == "Scene01/fog/frames/depth/Camera_0/depth_00002.png"
    assert "16-bit" in by_code["bad_depth"]["reason"]
    ids = read_manifest(vkitti.parent / "out")["id"].tolist()
    assert "Scene01/fog/frames/rgb/Camera_0/rgb_00000.jpg" in ids


def test_a_corrupt_depth_png_is_unreadable(vkitti):
    _, depth = _frame_dirs(vkitti)
    (depth / "depth_00000.png").write_bytes(b"\x89PNG\r\n\x1a\ngarbage")
    pairs, _ = scan_rgbd_pairs(vkitti, VKITTI2)
    broken = next(p for p in pairs if p[1] == depth / "depth_00000.png")
    with pytest.raises(SkippedFile, match="cannot read depth map") as info:
        read_rgbd_pair(*broken, VKITTI2)
    assert info.value.code == "unreadable"
