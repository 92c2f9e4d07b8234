import struct

import numpy as np
import pytest

from depth_core.data.image_io import ImageReadError
from depth_core.zeroshot.readers import sintel
from depth_core.zeroshot.samples import BenchmarkRootError, SkippedFile

H, W = 4, 7  # the real frames are 436 x 1024


def write_dpt(path, depth, tag=202021.25):
    """Sintel's SDK `depth_write`: float32 tag, int32 width, int32 height, float32 rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = depth.shape
    path.write_bytes(
        struct.pack("<fii", tag, width, height) + np.asarray(depth, dtype="<f4").tobytes()
    )
    return path


def _depth(offset=0.0):
    rows, cols = np.mgrid[0:H, 0:W]
    return (1.0 + offset + 0.5 * rows + 0.125 * cols).astype(np.float32)


@pytest.fixture
def root(tmp_path, save_picture, ramp_image):
    """alley_1 with final and clean passes, bamboo_1 with the clean pass only."""
    training = tmp_path / "training"
    for scene, passes, offset in (("alley_1", ("final", "clean"), 0), ("bamboo_1", ("clean",), 9)):
        for number in (1, 2):
            write_dpt(training / f"depth/{scene}/frame_{number:04d}.dpt", _depth(offset + number))
            for kind in passes:
                image = ramp_image(H, W, offset=offset + number + (50 if kind == "clean" else 0))
                save_picture(training / f"{kind}/{scene}/frame_{number:04d}.png", image)
    return tmp_path


def test_read_dpt_reads_rows_in_order(tmp_path):
    depth = _depth()
    np.testing.assert_array_equal(sintel.read_dpt(write_dpt(tmp_path / "d.dpt", depth)), depth)


def test_read_dpt_rejects_a_wrong_tag_or_size(tmp_path):
    with pytest.raises(ImageReadError, match=r"bad\.dpt.*tag"):
        sintel.read_dpt(write_dpt(tmp_path / "bad.dpt", _depth(), tag=1.0))
    short = write_dpt(tmp_path / "short.dpt", _depth())
    short.write_bytes(short.read_bytes()[:-4])
    with pytest.raises(ImageReadError, match=r"short\.dpt.*7x4"):
        sintel.read_dpt(short)
    (tmp_path / "tiny.dpt").write_bytes(b"\x00" * 5)
    with pytest.raises(ImageReadError, match="header"):
        sintel.read_dpt(tmp_path / "tiny.dpt")


def test_entries_are_the_depth_files_sorted(root):
    assert sintel.sintel_entries(root) == [
        "training/depth/alley_1/frame_0001.dpt",
        "training/depth/alley_1/frame_0002.dpt",
        "training/depth/bamboo_1/frame_0001.dpt",
        "training/depth/bamboo_1/frame_0002.dpt",
    ]
    assert sintel.sintel_entries(root / "training")[0] == "depth/alley_1/frame_0001.dpt"


def test_load_pairs_the_final_pass_and_falls_back_to_clean(root, ramp_image):
    final = sintel.sintel_load(root, "training/depth/alley_1/frame_0002.dpt")
    assert final.name == "training/depth/alley_1/frame_0002.dpt"
    np.testing.assert_array_equal(final.image, ramp_image(H, W, offset=2))
    np.testing.assert_array_equal(final.depth, _depth(2))
    assert final.valid.all() and final.depth.dtype == np.float32
    clean = sintel.sintel_load(root / "training", "depth/bamboo_1/frame_0001.dpt")
    np.testing.assert_array_equal(clean.image, ramp_image(H, W, offset=60))
    np.testing.assert_array_equal(clean.depth, _depth(10))


def test_non_positive_or_nan_depth_is_a_hole(root):
    depth = _depth(1)
    depth[1, 3], depth[2, 6] = 0.0, np.nan
    write_dpt(root / "training/depth/alley_1/frame_0001.dpt", depth)
    sample = sintel.sintel_load(root, "training/depth/alley_1/frame_0001.dpt")
    assert sample.valid.sum() == H * W - 2 and not sample.valid[1, 3] and not sample.valid[2, 6]
    assert sample.depth[2, 6] == 0


def test_a_corrupt_dpt_is_skipped_as_corrupt(root):
    entry = "training/depth/alley_1/frame_0001.dpt"
    write_dpt(root / entry, _depth(), tag=202021.0)
    with pytest.raises(SkippedFile) as corrupt:
        sintel.sintel_load(root, entry)
    assert corrupt.value.code == "corrupt" and entry in corrupt.value.reason


def test_a_frame_without_image_is_skipped_as_missing(root):
    entry = "training/depth/bamboo_1/frame_0002.dpt"
    (root / "training/clean/bamboo_1/frame_0002.png").unlink()
    with pytest.raises(SkippedFile) as missing:
        sintel.sintel_load(root, entry)
    assert missing.value.code == "missing" and "frame_0002.png" in missing.value.reason
    assert "training/final/bamboo_1" in missing.value.reason


def test_a_root_without_training_depth_is_a_root_error(tmp_path):
    with pytest.raises(BenchmarkRootError, match="nowhere"):
        sintel.sintel_entries(tmp_path / "nowhere")
    with pytest.raises(BenchmarkRootError, match="depth is not a folder"):
        sintel.sintel_entries(tmp_path)
    (tmp_path / "training/depth/alley_1").mkdir(parents=True)
    with pytest.raises(BenchmarkRootError, match=r"training/depth holds no"):
        sintel.sintel_entries(tmp_path)
