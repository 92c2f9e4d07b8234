import numpy as np
import pytest
from PIL import Image

from depth_core.data.importers import (
    DatasetImportError,
    RGBDImportConfig,
    import_rgbd_folder,
    read_rgbd_pair,
    scan_rgbd_pairs,
)

H, W = 4, 5
TARTANAIR = RGBDImportConfig(format="tartanair", height=H, width=W, depth_resize="nearest")


def _trajectory(src, env="abandonedfactory", level="Easy", name="P000"):
    return src / env / level / name


def _rgb(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((H, W, 3), 60, np.uint8)).save(path)


def _npy(path, depth):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.asarray(depth, dtype=np.float32))


def _depth():
    depth = np.linspace(1.0, 20.0, H * W, dtype=np.float32).reshape(H, W)
    depth[0, 0], depth[0, 1], depth[0, 2], depth[0, 3] = np.nan, np.inf, 0.0, -1.0
    return depth


@pytest.fixture
def tartanair(tmp_path):
    src = tmp_path / "tartanair"
    trajectory = _trajectory(src)
    for side in ("left", "right"):
        _rgb(trajectory / f"image_{side}" / f"000000_{side}.png")
        _npy(trajectory / f"depth_{side}" / f"000000_{side}_depth.npy", _depth())
    return src


def test_metres_as_stored_non_finite_and_non_positive_invalid(tartanair):
    pairs, skipped = scan_rgbd_pairs(tartanair, TARTANAIR)
    assert skipped == []
    assert [p[0].name for p in pairs] == ["000000_left.png", "000000_right.png"]
    assert [p[1].name for p in pairs] == ["000000_left_depth.npy", "000000_right_depth.npy"]
    _, depth, mask = read_rgbd_pair(*pairs[1], TARTANAIR)
    expected = _depth()
    assert not mask[0, :4].any() and (depth[0, :4] == 0).all()
    np.testing.assert_array_equal(depth[1:], expected[1:])
    config = TARTANAIR.model_copy(update={"max_depth": 10.0})
    _, depth, mask = read_rgbd_pair(*pairs[0], config)
    assert mask.sum() == np.count_nonzero((expected > 0) & (expected <= 10.0))


def test_hard_trajectories_unpaired_and_corrupt_files(tartanair):
    hard = _trajectory(tartanair, level="Hard", name="P001")
    _rgb(hard / "image_left" / "000000_left.png")
    _npy(hard / "depth_left" / "000000_left_depth.npy", _depth())
    _rgb(hard / "image_left" / "000001_left.png")  # no depth
    _npy(hard / "depth_right" / "000001_right_depth.npy", _depth())  # no image
    _rgb(hard / "image_left" / "000002_left.png")
    (hard / "depth_left" / "000002_left_depth.npy").write_bytes(b"garbage")
    _npy(hard / "flow" / "000000_000001_flow.npy", np.zeros((H, W, 2)))  # not part of pairing
    stats = import_rgbd_folder(tartanair, tartanair.parent / "out", TARTANAIR, progress=False)
    assert stats.n_samples == 3
    assert stats.skipped_by_code == {"no_depth": 1, "no_image": 1, "unreadable": 1}
    files = {s["code"]: s["file"] for s in stats.skipped}
    assert files["no_depth"] == "abandonedfactory/Hard/P001/image_left/000001_left.png"
    assert files["no_image"] == "abandonedfactory/Hard/P001/depth_right/000001_right_depth.npy"
    assert files["unreadable"] == "abandonedfactory/Hard/P001/image_left/000002_left.png"


def test_a_folder_without_the_layout_names_what_was_expected(tmp_path):
    _rgb(tmp_path / "src" / "a.png")
    with pytest.raises(DatasetImportError, match="no tartanair files under .*image_left"):
        scan_rgbd_pairs(tmp_path / "src", TARTANAIR)
