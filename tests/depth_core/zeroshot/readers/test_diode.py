import numpy as np
import pytest

from depth_core.zeroshot.readers import diode
from depth_core.zeroshot.samples import BenchmarkRootError, SkippedFile

H, W = 4, 6
INDOOR = "val/indoors/scene_00019/scan_00183/00019_00183_indoors_000_010"
OUTDOOR = "val/outdoor/scene_00022/scan_00193/00022_00193_outdoor_000_000"


def _depth(offset):
    rows, cols = np.mgrid[0:H, 0:W]
    return (offset + 0.5 * rows + 0.125 * cols).astype(np.float32)


def _write_triple(root, stem, offset, save_picture, ramp_image, mask=None):
    save_picture(root / f"{stem}.png", ramp_image(H, W, offset=int(offset)))
    np.save(root / f"{stem}_depth.npy", _depth(offset)[:, :, None])  # (H, W, 1) as published
    mask = np.ones((H, W), dtype=np.float32) if mask is None else mask
    np.save(root / f"{stem}_depth_mask.npy", mask)


@pytest.fixture
def root(tmp_path, save_picture, ramp_image):
    mask = np.ones((H, W), dtype=np.float32)
    mask[0, 1] = 0.0
    _write_triple(tmp_path, OUTDOOR, 20.0, save_picture, ramp_image)
    _write_triple(tmp_path, INDOOR, 2.0, save_picture, ramp_image, mask=mask)
    return tmp_path


def test_entries_are_the_images_sorted_by_relative_path(root):
    assert diode.diode_entries(root) == [f"{INDOOR}.png", f"{OUTDOOR}.png"]


@pytest.mark.parametrize(
    "sub, prefix",
    [("val", "val/"), ("val/indoors", "val/indoors/"), ("val/outdoor", "val/outdoor/")],
)
def test_root_may_be_val_or_one_scene_type(root, sub, prefix):
    expected = [e[len(prefix) :] for e in diode.diode_entries(root) if e.startswith(prefix)]
    assert diode.diode_entries(root / sub) == expected and expected


def test_load_reads_depth_and_the_mask(root, ramp_image):
    sample = diode.diode_load(root, f"{INDOOR}.png")
    assert sample.name == f"{INDOOR}.png"
    np.testing.assert_array_equal(sample.image, ramp_image(H, W, offset=2))
    assert sample.depth.shape == (H, W) and sample.depth.dtype == np.float32
    expected_valid = np.ones((H, W), dtype=bool)
    expected_valid[0, 1] = False
    np.testing.assert_array_equal(sample.valid, expected_valid)
    np.testing.assert_array_equal(sample.depth, np.where(expected_valid, _depth(2.0), 0.0))


def test_zero_depth_under_a_true_mask_is_a_hole(root):
    depth = _depth(2.0)
    depth[3, 5] = 0.0
    np.save(root / f"{INDOOR}_depth.npy", depth[:, :, None])
    sample = diode.diode_load(root, f"{INDOOR}.png")
    assert not sample.valid[3, 5] and sample.valid[3, 4]


def test_missing_mask_or_depth_is_skipped_as_missing(root):
    (root / f"{INDOOR}_depth_mask.npy").unlink()
    with pytest.raises(SkippedFile) as mask:
        diode.diode_load(root, f"{INDOOR}.png")
    assert mask.value.code == "missing" and "_depth_mask.npy" in mask.value.reason
    (root / f"{OUTDOOR}_depth.npy").unlink()
    with pytest.raises(SkippedFile) as depth:
        diode.diode_load(root, f"{OUTDOOR}.png")
    assert depth.value.code == "missing" and f"{OUTDOOR}_depth.npy" in depth.value.reason


def test_unreadable_depth_or_misshapen_mask_is_corrupt(root):
    (root / f"{INDOOR}_depth.npy").write_bytes(b"not numpy")
    with pytest.raises(SkippedFile) as depth:
        diode.diode_load(root, f"{INDOOR}.png")
    assert depth.value.code == "corrupt" and f"{INDOOR}_depth.npy" in depth.value.reason
    np.save(root / f"{OUTDOOR}_depth_mask.npy", np.ones((W, H), dtype=np.float32))
    with pytest.raises(SkippedFile) as mask:
        diode.diode_load(root, f"{OUTDOOR}.png")
    assert mask.value.code == "corrupt" and "_depth_mask.npy" in mask.value.reason


def test_a_root_without_diode_folders_is_a_root_error(tmp_path):
    with pytest.raises(BenchmarkRootError, match="nowhere"):
        diode.diode_entries(tmp_path / "nowhere")
    with pytest.raises(BenchmarkRootError, match=str(tmp_path)):
        diode.diode_entries(tmp_path)
    (tmp_path / "val/indoors").mkdir(parents=True)
    with pytest.raises(BenchmarkRootError, match=r"scene_\*/scan_\*/\*\.png"):
        diode.diode_entries(tmp_path)


def test_diode_takes_no_split_file(root):
    with pytest.raises(BenchmarkRootError, match="no split file"):
        diode.diode_entries(root, root / "split.txt")
