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

H, W = 3, 4
PID = "5a3ca9cb270f55289a1c2c9b"
BLENDEDMVS = RGBDImportConfig(format="blendedmvs", height=H, width=W, depth_resize="nearest")


def _jpeg(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((H, W, 3), 80, np.uint8)).save(path, quality=95)


def _pfm(path, top_first, channels=1):
    """A little-endian PFM as BlendedMVS ships it: rows bottom to top."""
    path.parent.mkdir(parents=True, exist_ok=True)
    magic = "Pf" if channels == 1 else "PF"
    header = f"{magic}\n{W} {H}\n-1.0\n".encode()
    path.write_bytes(header + np.ascontiguousarray(top_first[::-1]).astype("<f4").tobytes())


DEPTH = np.array([[0.0, 2.5, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], [9.0, 10.0, 11.0, 12.0]])


@pytest.fixture
def blended(tmp_path):
    src = tmp_path / "blendedmvs"
    _jpeg(src / PID / "blended_images" / "00000000.jpg")
    _jpeg(src / PID / "blended_images" / "00000000_masked.jpg")
    _pfm(src / PID / "rendered_depth_maps" / "00000000.pfm", DEPTH)
    (src / PID / "cams").mkdir()
    (src / PID / "cams" / "00000000_cam.txt").write_text("extrinsic\n")
    return src


def test_pfm_depth_top_row_first_and_zero_invalid(blended):
    pairs, skipped = scan_rgbd_pairs(blended, BLENDEDMVS)
    assert skipped == [] and len(pairs) == 1
    assert pairs[0][0].name == "00000000.jpg"
    _, depth, mask = read_rgbd_pair(*pairs[0], BLENDEDMVS)
    np.testing.assert_array_equal(depth, DEPTH.astype(np.float32))
    assert not mask[0, 0] and mask.sum() == H * W - 1


def test_masked_copies_are_ignored_unpaired_and_bad_files_listed(blended):
    images, depths = blended / PID / "blended_images", blended / PID / "rendered_depth_maps"
    _jpeg(images / "00000001.jpg")  # no depth
    _jpeg(images / "00000001_masked.jpg")
    _pfm(depths / "00000002.pfm", DEPTH)  # no image
    _jpeg(images / "00000003.jpg")
    (depths / "00000003.pfm").write_bytes(b"Pf\n4 3\n-1.0\nshort")  # truncated
    _jpeg(images / "00000004.jpg")
    _pfm(depths / "00000004.pfm", np.repeat(DEPTH[..., None], 3, axis=2), channels=3)
    stats = import_rgbd_folder(blended, blended.parent / "out", BLENDEDMVS, progress=False)
    assert stats.n_samples == 1
    assert stats.skipped_by_code == {
        "bad_depth": 1,
        "no_depth": 1,
        "no_image": 1,
        "unreadable": 1,
    }
    files = {s["code"]: s["file"] for s in stats.skipped}
    assert files["no_depth"] == f"{PID}/blended_images/00000001.jpg"
    assert files["no_image"] == f"{PID}/rendered_depth_maps/00000002.pfm"
    assert files["unreadable"] == f"{PID}/blended_images/00000003.jpg"
    assert files["bad_depth"] == f"{PID}/blended_images/00000004.jpg"


def test_a_truncated_pfm_says_why(blended):
    (blended / PID / "rendered_depth_maps" / "00000000.pfm").write_bytes(b"Pf\n4 3\n-1.0\n")
    pairs, _ = scan_rgbd_pairs(blended, BLENDEDMVS)
    with pytest.raises(SkippedFile, match="holds 48 bytes of floats, the file has 0") as info:
        read_rgbd_pair(*pairs[0], BLENDEDMVS)
    assert info.value.code == "unreadable"
