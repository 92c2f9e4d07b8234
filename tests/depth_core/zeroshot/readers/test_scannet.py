import numpy as np
import pytest

from depth_core.zeroshot.readers import scannet
from depth_core.zeroshot.readers.scannet import ScanNetEntry
from depth_core.zeroshot.samples import BenchmarkRootError, SkippedFile

COLOUR = (8, 10)  # the real colour frames are 968 x 1296, the depth frames 480 x 640
DEPTH = (4, 5)


def _raw_depth(offset):
    """16-bit millimetres with sensor holes, different along both axes."""
    rows, cols = np.mgrid[0 : DEPTH[0], 0 : DEPTH[1]]
    raw = 1000 + 100 * offset + 37 * rows + 3 * cols
    raw[rows == cols] = 0
    return raw.astype(np.uint16)


@pytest.fixture
def root(tmp_path, save_picture, ramp_image):
    for frame in (0, 1):
        save_picture(tmp_path / f"scene0707_00/color/{frame:06d}.png", ramp_image(*COLOUR, frame))
        save_picture(tmp_path / f"scene0707_00/depth/{frame:06d}.png", _raw_depth(frame))
    (tmp_path / "scannet_test.txt").write_text(
        "scene0707_00/color/000000.png scene0707_00/depth/000000.png\n"
        "\n"
        "scene0707_00/color/000001.png scene0707_00/depth/000001.png\n"
        "scene0707_00/color/000002.png scene0707_00/depth/000002.png\n"
    )
    return tmp_path


def test_entries_are_the_list_lines_in_order(root):
    assert scannet.scannet_entries(root) == [
        ScanNetEntry(f"scene0707_00/color/{f:06d}.png", f"scene0707_00/depth/{f:06d}.png")
        for f in (0, 1, 2)
    ]


def test_load_reads_millimetres_at_the_depth_resolution(root, ramp_image):
    sample = scannet.scannet_load(root, scannet.scannet_entries(root)[1])
    raw = _raw_depth(1)
    assert sample.name == "scene0707_00/color/000001.png"
    np.testing.assert_array_equal(sample.image, ramp_image(*COLOUR, 1))
    assert sample.depth.shape == DEPTH and sample.depth.dtype == np.float32
    np.testing.assert_array_equal(sample.valid, raw > 0)
    np.testing.assert_array_equal(sample.depth, (raw / 1000.0).astype(np.float32))


def test_a_colour_jpeg_reads(root, save_picture, ramp_image):
    save_picture(root / "scene0707_00/color/000000.jpg", ramp_image(*COLOUR))
    entry = ScanNetEntry("scene0707_00/color/000000.jpg", "scene0707_00/depth/000000.png")
    assert scannet.scannet_load(root, entry).image.shape == (*COLOUR, 3)


def test_missing_and_corrupt_files_are_skipped(root):
    entries = scannet.scannet_entries(root)
    with pytest.raises(SkippedFile) as missing:
        scannet.scannet_load(root, entries[2])
    assert missing.value.code == "missing" and "000002.png" in missing.value.reason
    (root / "scene0707_00/depth/000000.png").write_bytes(b"garbage")
    with pytest.raises(SkippedFile) as corrupt:
        scannet.scannet_load(root, entries[0])
    assert corrupt.value.code == "corrupt" and "depth/000000.png" in corrupt.value.reason


def test_a_malformed_line_names_the_file_and_line(root):
    (root / "scannet_test.txt").write_text("a.jpg b.png\nc.jpg\n")
    with pytest.raises(BenchmarkRootError, match=r"scannet_test\.txt line 2"):
        scannet.scannet_entries(root)


def test_missing_root_or_list_file_is_a_root_error(tmp_path):
    with pytest.raises(BenchmarkRootError, match="nowhere"):
        scannet.scannet_entries(tmp_path / "nowhere")
    with pytest.raises(BenchmarkRootError, match="scannet_test.txt does not exist"):
        scannet.scannet_entries(tmp_path)
    with pytest.raises(BenchmarkRootError, match="mine.txt"):
        scannet.scannet_entries(tmp_path, tmp_path / "mine.txt")
