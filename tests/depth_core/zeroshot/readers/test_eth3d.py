import numpy as np
import pytest

from depth_core.zeroshot.readers import eth3d
from depth_core.zeroshot.samples import BenchmarkRootError, SkippedFile

H, W = 6, 9  # the real DSLR frames are 4032 x 6048


def _depth():
    rows, cols = np.mgrid[0:H, 0:W]
    depth = (3.0 + 0.25 * rows + 0.0625 * cols).astype("<f4")
    depth[2, 7] = np.inf  # no laser measurement
    return depth


def _two_halves():
    """A JPEG-proof picture: dark left, bright right, mid-grey bottom row."""
    image = np.zeros((H, W, 3), dtype=np.uint8)
    image[:, W // 2 + 1 :] = 240
    image[-1] = 128
    return image


@pytest.fixture
def root(tmp_path, save_picture):
    """Two scenes one level down: courtyard with undistorted images, office with dslr_images."""
    for scene, folder in (("courtyard", "dslr_images_undistorted"), ("office", "dslr_images")):
        base = tmp_path / "multi_view_training" / scene
        save_picture(base / "images" / folder / "DSC_0286.JPG", _two_halves())
        depth_dir = base / "ground_truth_depth" / "dslr_images"
        depth_dir.mkdir(parents=True)
        _depth().tofile(depth_dir / "DSC_0286.JPG")  # raw float32, despite the name
    return tmp_path


def test_entries_are_the_depth_files_found_recursively(root):
    assert eth3d.eth3d_entries(root) == [
        "multi_view_training/courtyard/ground_truth_depth/dslr_images/DSC_0286.JPG",
        "multi_view_training/office/ground_truth_depth/dslr_images/DSC_0286.JPG",
    ]


def test_load_reads_raw_float32_row_major_with_inf_as_a_hole(root):
    for entry in eth3d.eth3d_entries(root):
        sample = eth3d.eth3d_load(root, entry)
        assert sample.name == entry
        assert sample.image.shape == (H, W, 3) and sample.depth.shape == (H, W)
        assert sample.image[0, 0].max() < 40 and sample.image[0, -1].min() > 200
        expected = _depth()
        np.testing.assert_array_equal(sample.valid, np.isfinite(expected))
        np.testing.assert_array_equal(sample.depth, np.where(np.isfinite(expected), expected, 0))
        assert sample.depth.dtype == np.float32


def test_undistorted_images_are_preferred(root, save_picture):
    office = root / "multi_view_training/office/images"
    save_picture(office / "dslr_images_undistorted/DSC_0286.JPG", np.full((H, W, 3), 255, np.uint8))
    entry = "multi_view_training/office/ground_truth_depth/dslr_images/DSC_0286.JPG"
    assert eth3d.eth3d_load(root, entry).image.min() > 240


def test_a_depth_file_of_another_size_is_corrupt(root):
    entry = eth3d.eth3d_entries(root)[0]
    _depth()[:, :-1].copy().tofile(root / entry)
    with pytest.raises(SkippedFile) as corrupt:
        eth3d.eth3d_load(root, entry)
    assert corrupt.value.code == "corrupt" and entry in corrupt.value.reason
    assert f"{W}x{H}" in corrupt.value.reason


def test_a_missing_image_is_skipped_as_missing(root):
    entry = eth3d.eth3d_entries(root)[1]
    (root / "multi_view_training/office/images/dslr_images/DSC_0286.JPG").unlink()
    with pytest.raises(SkippedFile) as missing:
        eth3d.eth3d_load(root, entry)
    assert missing.value.code == "missing" and "dslr_images_undistorted" in missing.value.reason


def test_a_corrupt_image_is_skipped_as_corrupt(root):
    image = root / "multi_view_training/courtyard/images/dslr_images_undistorted/DSC_0286.JPG"
    image.write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(SkippedFile) as corrupt:
        eth3d.eth3d_load(root, eth3d.eth3d_entries(root)[0])
    assert corrupt.value.code == "corrupt" and "DSC_0286.JPG" in corrupt.value.reason


def test_a_root_without_ground_truth_depth_is_a_root_error(tmp_path):
    with pytest.raises(BenchmarkRootError, match="nowhere"):
        eth3d.eth3d_entries(tmp_path / "nowhere")
    with pytest.raises(BenchmarkRootError, match="ground_truth_depth"):
        eth3d.eth3d_entries(tmp_path)
