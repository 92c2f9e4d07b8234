import numpy as np
import pytest

from depth_core.zeroshot.readers import kitti
from depth_core.zeroshot.readers.kitti import KittiEntry
from depth_core.zeroshot.samples import BenchmarkRootError, SkippedFile

H, W = 5, 7
DRIVE = "2011_09_26_drive_0002_sync"


def _rgb_path(frame):
    return f"2011_09_26/{DRIVE}/image_02/data/{frame:010d}.png"


def _gt_path(frame):
    return f"{DRIVE}/proj_depth/groundtruth/image_02/{frame:010d}.png"


def _raw_depth(frame):
    """16-bit KITTI depth (value / 256 = metres) with LiDAR holes, different along both axes."""
    rows, cols = np.mgrid[0:H, 0:W]
    raw = 256 * (5 + frame) + 16 * rows + cols
    raw[(rows + cols) % 3 == 0] = 0
    return raw.astype(np.uint16)


@pytest.fixture
def root(tmp_path, save_picture, ramp_image):
    """Frames 69 (GT in data_depth_annotated/val), 70 (GT in train/ and, differently, in val/),
    71 (GT None), 72 (GT listed but absent), 73 (GT not a PNG)."""
    for frame in (69, 70, 71, 72, 73):
        save_picture(tmp_path / _rgb_path(frame), ramp_image(H, W, offset=frame))
    save_picture(tmp_path / "data_depth_annotated/val" / _gt_path(69), _raw_depth(69))
    save_picture(tmp_path / "data_depth_annotated/train" / _gt_path(70), _raw_depth(70))
    save_picture(tmp_path / "data_depth_annotated/val" / _gt_path(70), _raw_depth(0))
    corrupt = tmp_path / "val" / _gt_path(73)
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(b"\x89PNG not really")
    lines = [
        "# Eigen test split",
        f"{_rgb_path(69)} {_gt_path(69)} 721.5377",
        "",
        f"{_rgb_path(70)} {_gt_path(70)} 721.5377",
        f"{_rgb_path(71)} None 721.5377",
        f"{_rgb_path(72)} {_gt_path(72)} 721.5377",
        f"{_rgb_path(73)} {_gt_path(73)} 721.5377",
    ]
    (tmp_path / "eigen_test_files_with_gt.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_entries_are_the_split_lines_with_none_kept(root):
    entries = kitti.kitti_entries(root)
    assert [e.image for e in entries] == [_rgb_path(f) for f in (69, 70, 71, 72, 73)]
    assert entries[0] == KittiEntry(_rgb_path(69), _gt_path(69), 721.5377)
    assert entries[2].depth is None


def test_load_reads_metres_over_256_with_zero_as_a_hole(root, ramp_image):
    sample = kitti.kitti_load(root, kitti.kitti_entries(root)[0])
    raw = _raw_depth(69)
    assert sample.name == _rgb_path(69)
    np.testing.assert_array_equal(sample.image, ramp_image(H, W, offset=69))
    np.testing.assert_array_equal(sample.valid, raw > 0)
    np.testing.assert_array_equal(sample.depth, (raw / 256.0).astype(np.float32))
    assert sample.depth.dtype == np.float32 and sample.depth[0, 0] == 0


def test_ground_truth_is_looked_up_in_train_before_val(root):
    sample = kitti.kitti_load(root, kitti.kitti_entries(root)[1])
    np.testing.assert_array_equal(sample.depth, (_raw_depth(70) / 256.0).astype(np.float32))


def test_ground_truth_beside_the_raw_tree_is_found_first(root, save_picture):
    save_picture(root / _gt_path(69), _raw_depth(1))
    sample = kitti.kitti_load(root, kitti.kitti_entries(root)[0])
    np.testing.assert_array_equal(sample.depth, (_raw_depth(1) / 256.0).astype(np.float32))


def test_none_missing_and_corrupt_ground_truth_are_skipped(root):
    entries = kitti.kitti_entries(root)
    with pytest.raises(SkippedFile) as none:
        kitti.kitti_load(root, entries[2])
    assert none.value.code == "no_ground_truth" and _rgb_path(71) in none.value.reason
    with pytest.raises(SkippedFile) as missing:
        kitti.kitti_load(root, entries[3])
    assert missing.value.code == "missing" and _gt_path(72) in missing.value.reason
    assert "data_depth_annotated/val" in missing.value.reason
    with pytest.raises(SkippedFile) as corrupt:
        kitti.kitti_load(root, entries[4])
    assert corrupt.value.code == "corrupt" and _gt_path(73) in corrupt.value.reason


def test_a_missing_image_is_skipped(root):
    (root / _rgb_path(69)).unlink()
    with pytest.raises(SkippedFile) as missing:
        kitti.kitti_load(root, kitti.kitti_entries(root)[0])
    assert missing.value.code == "missing" and _rgb_path(69) in missing.value.reason


def test_split_overrides_the_default_file(root, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("splits") / "two.txt"
    elsewhere.write_text(f"{_rgb_path(70)} {_gt_path(70)} 707.0912\n")
    assert [e.focal for e in kitti.kitti_entries(root, elsewhere)] == [707.0912]
    (root / "mine.txt").write_text(f"{_rgb_path(71)} None 721.5377\n")
    assert [e.image for e in kitti.kitti_entries(root, "mine.txt")] == [_rgb_path(71)]


def test_a_malformed_line_names_the_file_and_line(root):
    split = root / "eigen_test_files_with_gt.txt"
    split.write_text(f"{_rgb_path(69)} {_gt_path(69)} 721.5377\n\n{_rgb_path(70)} {_gt_path(70)}\n")
    with pytest.raises(BenchmarkRootError, match=r"eigen_test_files_with_gt\.txt line 3"):
        kitti.kitti_entries(root)
    split.write_text(f"{_rgb_path(69)} {_gt_path(69)} focal\n")
    with pytest.raises(BenchmarkRootError, match="line 1: focal length 'focal'"):
        kitti.kitti_entries(root)


def test_missing_root_or_split_file_is_a_root_error(tmp_path):
    with pytest.raises(BenchmarkRootError, match="nowhere"):
        kitti.kitti_entries(tmp_path / "nowhere")
    with pytest.raises(BenchmarkRootError, match="eigen_test_files_with_gt.txt does not exist"):
        kitti.kitti_entries(tmp_path)
    with pytest.raises(BenchmarkRootError, match="other.txt"):
        kitti.kitti_entries(tmp_path, "other.txt")
