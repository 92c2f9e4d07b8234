import numpy as np
import pytest
from PIL import Image

from depth_core.data.image_io import (
    ImageReadError,
    crop_box_for_aspect,
    fit_depth,
    fit_image,
    read_depth,
    read_image,
    resize_depth,
)


def _save_u16(path, values):
    Image.fromarray(np.asarray(values, dtype=np.uint16)).save(path)
    return path


# ------------------------------------------------------------------ read_image


def test_read_image_converts_grey_rgba_and_16bit(tmp_path):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(grey).save(tmp_path / "grey.png")
    out = read_image(tmp_path / "grey.png")
    assert out.dtype == np.uint8 and out.shape == (3, 4, 3)
    assert np.array_equal(out[..., 0], grey) and np.array_equal(out[..., 2], grey)

    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 255
    rgba[0, 0, 3] = 0  # fully transparent pixel composites onto black
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    out = read_image(tmp_path / "rgba.png")
    assert out.shape == (2, 2, 3)
    assert tuple(out[1, 1]) == (200, 0, 0) and tuple(out[0, 0]) == (0, 0, 0)

    _save_u16(tmp_path / "g16.png", [[0, 65535], [32768, 257]])
    out = read_image(tmp_path / "g16.png")
    assert out[..., 0].tolist() == [[0, 255], [128, 1]]


def test_read_image_webp_and_jpeg(tmp_path):
    rgb = np.full((8, 8, 3), (10, 120, 240), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.webp", lossless=True)
    assert np.array_equal(read_image(tmp_path / "a.webp"), rgb)
    Image.fromarray(rgb).save(tmp_path / "a.jpg", quality=95)
    assert np.abs(read_image(tmp_path / "a.jpg").astype(int) - rgb).max() <= 4


def test_read_image_corrupt_file_names_it(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    with pytest.raises(ImageReadError, match="broken.png"):
        read_image(bad)
    with pytest.raises(ImageReadError, match="missing.jpg"):
        read_image(tmp_path / "missing.jpg")


# ------------------------------------------------------------------ read_depth


@pytest.mark.parametrize("scale", [1000.0, 5000.0, 256.0])
def test_read_depth_16bit_png_scale_conventions(tmp_path, scale):
    raw = np.array([[0, 1000, 5000], [256, 65535, 12345]], dtype=np.uint16)
    path = _save_u16(tmp_path / "d.png", raw)
    depth, mask = read_depth(path, scale=scale)
    assert depth.dtype == np.float32 and mask.dtype == bool
    assert not mask[0, 0] and depth[0, 0] == 0.0
    np.testing.assert_allclose(depth[mask], raw[mask] / scale, rtol=1e-6)
    assert mask.sum() == 5


def test_read_depth_npy_npz_and_keys(tmp_path):
    depth = np.array([[1.5, 2.0], [0.0, 4.0]], dtype=np.float32)
    np.save(tmp_path / "a.npy", depth)
    np.savez(tmp_path / "b.npz", depth=depth, other=np.ones(3))
    np.savez(tmp_path / "c.npz", whatever=depth.astype(np.float64))
    np.savez(tmp_path / "d.npz", x=depth, y=depth)
    for name in ("a.npy", "b.npz", "c.npz"):
        out, mask = read_depth(tmp_path / name)
        assert out.tolist() == [[1.5, 2.0], [0.0, 4.0]]
        assert mask.tolist() == [[True, True], [False, True]]
    out, _ = read_depth(tmp_path / "d.npz", key="y")
    assert out[1, 1] == 4.0
    with pytest.raises(ImageReadError, match="d.npz"):
        read_depth(tmp_path / "d.npz")


def test_read_depth_masks_nan_inf_zero_negative_and_range(tmp_path):
    values = np.array(
        [[np.nan, np.inf, -np.inf, 0.0, -1.0, 0.05, 0.5, 5.0, 50.0]], dtype=np.float32
    )
    np.save(tmp_path / "d.npy", values)
    depth, mask = read_depth(tmp_path / "d.npy")
    assert mask.tolist() == [[False] * 5 + [True] * 4]
    assert np.isfinite(depth).all() and (depth[~mask] == 0).all()
    depth, mask = read_depth(tmp_path / "d.npy", min_depth=0.1, max_depth=10.0)
    assert mask.tolist() == [[False] * 6 + [True, True, False]]
    assert depth[0, 6] == 0.5 and depth[0, 8] == 0.0


def test_read_depth_disparity_flag(tmp_path):
    raw = np.array([[0, 512, 2560]], dtype=np.uint16)  # KITTI-style disparity * 256
    path = _save_u16(tmp_path / "disp.png", raw)
    depth, mask = read_depth(path, scale=256.0, is_disparity=True)
    assert mask.tolist() == [[False, True, True]]
    np.testing.assert_allclose(depth[0, 1:], [1 / 2.0, 1 / 10.0], rtol=1e-6)
    depth, mask = read_depth(path, scale=256.0, is_disparity=True, max_depth=0.2)
    assert mask.tolist() == [[False, False, True]]


def test_read_depth_rejects_rgb_and_bad_scale(tmp_path):
    Image.fromarray(np.zeros((2, 2, 3), dtype=np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ImageReadError, match="rgb.png.*single-channel"):
        read_depth(tmp_path / "rgb.png")
    np.save(tmp_path / "cube.npy", np.ones((2, 2, 2)))
    with pytest.raises(ImageReadError, match="cube.npy"):
        read_depth(tmp_path / "cube.npy")
    with pytest.raises(ValueError, match="scale"):
        read_depth(tmp_path / "cube.npy", scale=0.0)


# ------------------------------------------------------------------ geometry


def test_crop_box_keeps_output_aspect():
    assert crop_box_for_aspect(40, 80, 20, 20) == (20.0, 0.0, 60.0, 40.0)
    assert crop_box_for_aspect(80, 40, 10, 20) == (0.0, 30.0, 40.0, 50.0)
    left, top, right, bottom = crop_box_for_aspect(375, 1242, 128, 160)
    assert (right - left) / (bottom - top) == pytest.approx(160 / 128)


def test_fit_image_center_crops_wide_image():
    image = np.zeros((40, 80, 3), dtype=np.uint8)
    image[:, :20] = (255, 0, 0)  # left quarter: cropped away
    image[:, 20:60] = (0, 255, 0)
    image[:, 60:] = (0, 0, 255)  # right quarter: cropped away
    out = fit_image(image, 10, 10)
    assert out.shape == (10, 10, 3) and out.dtype == np.uint8
    inner = out[:, 1:-1]  # the border column may see the antialiasing filter's neighbours
    assert (
        (inner[..., 1] == 255).all() and (inner[..., 0] == 0).all() and (inner[..., 2] == 0).all()
    )
    assert (out[..., 1] >= 192).all() and out[..., 0].max() < 64 and out[..., 2].max() < 64


def test_fit_image_and_depth_share_geometry():
    rows, cols = np.mgrid[0:60, 0:90]
    image = np.stack([cols * 2, rows * 4, np.zeros_like(rows)], axis=-1).astype(np.uint8)
    depth = (1.0 + cols).astype(np.float32)
    out_image = fit_image(image, 20, 20)
    out_depth, mask = fit_depth(depth, np.ones_like(depth, bool), 20, 20, method="nearest")
    assert mask.all()
    # the column encoded in red matches the column encoded in depth (within resampling)
    np.testing.assert_allclose(out_image[..., 0] / 2.0, out_depth - 1.0, atol=1.5)


@pytest.mark.parametrize("method", ["nearest", "mean"])
def test_resize_depth_never_mixes_invalid_into_valid(method):
    rng = np.random.default_rng(0)
    depth = rng.choice([1.0, 3.0], size=(64, 48)).astype(np.float32)
    invalid = rng.random((64, 48)) < 0.5
    depth[invalid] = rng.choice([0.0, np.nan, np.inf, 1000.0], size=invalid.sum())
    mask = ~invalid
    out, out_mask = resize_depth(depth, mask, 16, 12, method=method)
    assert out.shape == (16, 12) and out.dtype == np.float32 and out_mask.dtype == bool
    assert np.isfinite(out).all()
    assert (out[~out_mask] == 0).all()
    assert (
        out[out_mask].min() >= 1.0 and out[out_mask].max() <= 3.0
    )  # never pulled toward 0 or 1000
    if method == "nearest":
        assert set(np.unique(out[out_mask])) <= {1.0, 3.0}


def test_mean_resize_keeps_sparse_depth_alive():
    depth = np.zeros((100, 100), dtype=np.float32)
    mask = np.zeros((100, 100), dtype=bool)
    mask[::7, ::7] = True  # ~2% sparse, LiDAR-like
    depth[mask] = 5.0
    _, nearest_mask = resize_depth(depth, mask, 10, 10, method="nearest")
    mean_depth, mean_mask = resize_depth(depth, mask, 10, 10, method="mean")
    assert mean_mask.mean() > 0.9 and nearest_mask.mean() < 0.2
    np.testing.assert_allclose(mean_depth[mean_mask], 5.0, rtol=1e-6)


def test_resize_depth_upsamples_nearest_exactly():
    depth = np.array([[1.0, 2.0], [0.0, 4.0]], dtype=np.float32)
    out, mask = resize_depth(depth, depth > 0, 4, 4, method="nearest")
    assert out.tolist() == [[1, 1, 2, 2], [1, 1, 2, 2], [0, 0, 4, 4], [0, 0, 4, 4]]
    assert mask.sum() == 12
