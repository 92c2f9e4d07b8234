import os

import h5py
import numpy as np
import pytest
import scipy.io

from depth_core.zeroshot.readers import nyu
from depth_core.zeroshot.samples import BenchmarkRootError

N, H, W = 3, 6, 8  # MATLAB's images is (H, W, 3, N); HDF5 sees it as (N, 3, W, H)


def _frames(seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (N, H, W, 3), dtype=np.uint8)
    rows, cols = np.mgrid[0:H, 0:W]
    depths = np.stack([1.0 + 0.5 * i + 0.25 * rows + 0.03125 * cols for i in range(N)])
    return images, depths.astype(np.float32)


def _write_labeled(path, images, depths):
    """A MATLAB v7.3 file as MATLAB writes it: a 512-byte header block, then HDF5 with the
    column-major arrays' axes reversed."""
    with h5py.File(path, "w", userblock_size=512) as handle:
        handle.create_dataset("images", data=images.transpose(0, 3, 2, 1))
        handle.create_dataset("depths", data=depths.transpose(0, 2, 1))
    with open(path, "r+b") as raw:
        raw.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(116))
    return path


def _root(tmp_path, test=(3, 1), seed=0):
    images, depths = _frames(seed)
    _write_labeled(tmp_path / "nyu_depth_v2_labeled.mat", images, depths)
    column = np.asarray(test, dtype=np.float64).reshape(-1, 1)  # MATLAB keeps doubles
    scipy.io.savemat(tmp_path / "splits.mat", {"testNdxs": column, "trainNdxs": [[2.0]]})
    return images, depths


def test_entries_are_the_test_indices_zero_based_in_file_order(tmp_path):
    _root(tmp_path, test=(3, 1))
    assert nyu.nyu_entries(tmp_path) == [2, 0]


def test_load_transposes_the_matlab_arrays_back(tmp_path):
    images, depths = _root(tmp_path)
    sample = nyu.nyu_load(tmp_path, 2)
    assert sample.name == "nyu_depth_v2_labeled.mat#0003"
    assert sample.image.shape == (H, W, 3) and sample.image.dtype == np.uint8
    assert sample.depth.shape == (H, W) and sample.depth.dtype == np.float32
    np.testing.assert_array_equal(sample.image, images[2])
    np.testing.assert_array_equal(sample.depth, depths[2])
    assert sample.valid.all()


def test_zero_and_nan_depth_are_holes(tmp_path):
    images, depths = _frames()
    depths[0, 1, 2] = 0.0
    depths[0, 4, 7] = np.nan
    _write_labeled(tmp_path / "nyu_depth_v2_labeled.mat", images, depths)
    scipy.io.savemat(tmp_path / "splits.mat", {"testNdxs": [[1.0]]})
    sample = nyu.nyu_load(tmp_path, nyu.nyu_entries(tmp_path)[0])
    assert not sample.valid[1, 2] and not sample.valid[4, 7]
    assert sample.valid.sum() == H * W - 2
    assert sample.depth[1, 2] == 0 and sample.depth[4, 7] == 0


def test_a_v73_splits_file_reads_too(tmp_path):
    _root(tmp_path)
    with h5py.File(tmp_path / "splits.mat", "w", userblock_size=512) as handle:
        handle.create_dataset("testNdxs", data=np.array([[2.0, 3.0]]))  # (654, 1) seen as (1, 654)
    assert nyu.nyu_entries(tmp_path) == [1, 2]


def test_split_overrides_splits_mat(tmp_path):
    _root(tmp_path)
    scipy.io.savemat(tmp_path / "mine.mat", {"testNdxs": [[1.0], [2.0]]})
    assert nyu.nyu_entries(tmp_path, tmp_path / "mine.mat") == [0, 1]


def test_a_replaced_labeled_file_is_read_again(tmp_path):
    _root(tmp_path)
    first = nyu.nyu_load(tmp_path, 0)
    images, depths = _frames(seed=1)
    _write_labeled(tmp_path / "new.mat", images, depths + 1.0)
    os.replace(tmp_path / "new.mat", tmp_path / "nyu_depth_v2_labeled.mat")
    second = nyu.nyu_load(tmp_path, 0)
    np.testing.assert_array_equal(second.image, images[0])
    np.testing.assert_array_equal(second.depth, depths[0] + 1.0)
    assert not np.array_equal(first.image, second.image)


def test_missing_root_labeled_file_or_splits_is_a_root_error(tmp_path):
    with pytest.raises(BenchmarkRootError, match="nowhere"):
        nyu.nyu_entries(tmp_path / "nowhere")
    with pytest.raises(BenchmarkRootError, match="nyu_depth_v2_labeled.mat"):
        nyu.nyu_entries(tmp_path)
    images, depths = _frames()
    _write_labeled(tmp_path / "nyu_depth_v2_labeled.mat", images, depths)
    with pytest.raises(BenchmarkRootError, match="splits.mat"):
        nyu.nyu_entries(tmp_path)


def test_test_indices_outside_the_file_are_a_root_error(tmp_path):
    _root(tmp_path, test=(1, 4))
    with pytest.raises(BenchmarkRootError, match=r"splits\.mat.*\[4\]"):
        nyu.nyu_entries(tmp_path)


def test_a_labeled_file_of_another_shape_is_a_root_error(tmp_path):
    images, depths = _frames()
    with h5py.File(tmp_path / "nyu_depth_v2_labeled.mat", "w") as handle:
        handle.create_dataset("images", data=images.transpose(0, 3, 2, 1))
        handle.create_dataset("depths", data=depths)  # not transposed: (N, H, W)
    scipy.io.savemat(tmp_path / "splits.mat", {"testNdxs": [[1.0]]})
    with pytest.raises(BenchmarkRootError, match="depths"):
        nyu.nyu_entries(tmp_path)


def test_a_labeled_file_that_is_not_hdf5_is_a_root_error(tmp_path):
    (tmp_path / "nyu_depth_v2_labeled.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(200))
    scipy.io.savemat(tmp_path / "splits.mat", {"testNdxs": [[1.0]]})
    with pytest.raises(BenchmarkRootError, match="HDF5"):
        nyu.nyu_entries(tmp_path)
