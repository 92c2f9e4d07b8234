import json

import numpy as np
import pydantic
import pytest
from PIL import Image

from depth_core.data import importers as importers_module
from depth_core.data.dataset import ShardDataset, load_arrays
from depth_core.data.importers import (
    DatasetImportError,
    ImageImportConfig,
    RGBDImportConfig,
    import_image_folder,
    import_rgbd_folder,
    import_rgbd_folder_split,
)
from depth_core.data.manifest import read_manifest, read_summary

H, W = 8, 12


def _rgb(path, height=H, width=W, value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[..., 0] = value
    image[..., 1] = np.arange(width, dtype=np.uint8)[None, :] * 10
    Image.fromarray(image).save(path)
    return path


def _png16(path, values):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(values, dtype=np.uint16)).save(path)


def _depth_field(scale=1.0):
    rows, cols = np.mgrid[0:H, 0:W]
    return (1.0 + 0.1 * rows + 0.01 * cols) * scale


@pytest.fixture
def rgbd_folder(tmp_path):
    src = tmp_path / "src"
    _rgb(src / "a.png")
    _png16(src / "a_depth.png", np.round(_depth_field(1000.0)))  # millimetres
    _rgb(src / "sub" / "b.jpg")
    depth_b = _depth_field().astype(np.float32)
    depth_b[0, :3] = [np.nan, np.inf, 0.0]
    np.savez(src / "sub" / "b.depth.npz", depth=depth_b)
    _rgb(src / "sub" / "deeper" / "c.png")
    np.save(src / "sub" / "deeper" / "c.depth.npy", _depth_field().astype(np.float32) * 1000.0)
    _rgb(src / "d.png")  # no depth
    _png16(src / "e_depth.png", np.ones((H, W)))  # no image
    _rgb(src / "f.png")
    _png16(src / "f_depth.png", np.ones((H // 2, W // 2)))  # size mismatch
    _rgb(src / "g.png")
    np.save(src / "g.depth.npy", np.full((H, W), np.nan, dtype=np.float32))  # all invalid
    (src / "h.png").write_bytes(b"\x89PNG\r\n\x1a\ngarbage")  # corrupt
    _png16(src / "h_depth.png", np.ones((H, W)))
    _rgb(src / "i.png")
    _rgb(src / "i.jpg")
    _png16(src / "i_depth.png", np.ones((H, W)))  # two images claim it
    (src / "notes.txt").write_text("ignored")
    _rgb(src / ".hidden.png")
    return src


def test_import_rgbd_pairs_skips_and_records_reasons(rgbd_folder, tmp_path):
    dst = tmp_path / "out"
    config = RGBDImportConfig(
        height=H, width=W, depth_scale=1.0, shard_size=2, depth_resize="nearest"
    )
    stats = import_rgbd_folder(rgbd_folder, dst, config, progress=False)
    assert stats.n_samples == 3 and stats.n_shards == 2
    assert stats.skipped_by_code == {
        "ambiguous": 2,
        "no_depth": 1,
        "no_image": 1,
        "no_valid_depth": 1,
        "size_mismatch": 1,
        "unreadable": 1,
    }
    reasons = {s["file"]: s["reason"] for s in stats.skipped}
    assert "h.png" in reasons["h.png"] and "f_depth.png is 6x4" in reasons["f.png"]
    assert "no depth map" in reasons["d.png"] and "without an RGB" in reasons["e_depth.png"]

    summary = read_summary(dst)
    assert summary["kind"] == "labeled" and summary["n_samples"] == 3 and summary["n_skipped"] == 7
    assert {s["file"] for s in summary["skipped"]} == set(reasons)
    assert summary["parameters"]["depth_scale"] == 1.0
    manifest = read_manifest(dst)
    assert manifest["id"].tolist() == ["a.png", "sub/b.jpg", "sub/deeper/c.png"]
    assert manifest["depth_source"].tolist() == [
        "a_depth.png",
        "sub/b.depth.npz",
        "sub/deeper/c.depth.npy",
    ]

    arrays = load_arrays(dst)
    assert arrays["image"].dtype == np.uint8 and arrays["image"].shape == (3, H, W, 3)
    np.testing.assert_allclose(
        arrays["depth"][0], np.round(_depth_field(1000.0)), rtol=1e-6
    )  # scale 1: raw mm
    b_mask = arrays["mask"][1]
    assert (
        not b_mask[0, :3].any()
        and b_mask.sum() == H * W - 3
        and (arrays["depth"][1][~b_mask] == 0).all()
    )
    assert len(list(ShardDataset(dst))) == 3
    assert not (tmp_path / "out.partial").exists()


@pytest.mark.parametrize("scale", [1000.0, 5000.0, 256.0])
def test_png_depth_scale_conventions(tmp_path, scale):
    metres = _depth_field()
    _rgb(tmp_path / "src" / "x.png")
    _png16(tmp_path / "src" / "x_depth.png", np.round(metres * scale))
    import_rgbd_folder(
        tmp_path / "src",
        tmp_path / "out",
        RGBDImportConfig(height=H, width=W, depth_scale=scale),
        progress=False,
    )
    depth = load_arrays(tmp_path / "out")["depth"][0]
    np.testing.assert_allclose(depth, metres, atol=0.5 / scale + 1e-6)


def test_disparity_maps_and_depth_range(tmp_path):
    disparity = 1.0 / _depth_field()
    disparity[0, 0] = 0.0
    _rgb(tmp_path / "src" / "x.png")
    np.save(tmp_path / "src" / "x.npy", disparity.astype(np.float32))
    config = RGBDImportConfig(height=H, width=W, is_disparity=True, max_depth=1.5)
    import_rgbd_folder(tmp_path / "src", tmp_path / "out", config, progress=False)
    arrays = load_arrays(tmp_path / "out")
    expected = _depth_field()
    keep = expected <= 1.5
    keep[0, 0] = False
    assert arrays["mask"][0].tolist() == keep.tolist()
    np.testing.assert_allclose(arrays["depth"][0][keep], expected[keep], rtol=1e-5)
    assert (arrays["depth"][0][~keep] == 0).all()


def test_resize_keeps_aspect_by_centre_cropping(tmp_path):
    image = np.zeros((8, 16, 3), dtype=np.uint8)
    image[:, 4:12] = 255  # the centre square is white, the sides black
    Image.fromarray(image).save(_rgb(tmp_path / "src" / "wide.png"))
    depth = np.full((8, 16), 2.0, dtype=np.float32)
    depth[:, :4] = 9.0
    np.save(tmp_path / "src" / "wide.depth.npy", depth)
    import_rgbd_folder(
        tmp_path / "src", tmp_path / "out", RGBDImportConfig(height=4, width=4), progress=False
    )
    arrays = load_arrays(tmp_path / "out")
    assert arrays["image"].shape == (1, 4, 4, 3) and arrays["image"][0, :, 1:3].min() == 255
    assert (arrays["depth"][0][:, 1:] == 2.0).all() and arrays["depth"][0].max() < 9.0


def test_separate_image_and_depth_folders(tmp_path):
    _rgb(tmp_path / "src" / "rgb" / "seq" / "0001.jpg")
    _png16(tmp_path / "src" / "depth" / "seq" / "0001.png", np.full((H, W), 2560))
    config = RGBDImportConfig(
        height=H,
        width=W,
        image_dir="rgb",
        depth_dir="depth",
        depth_suffixes=[".png"],
        depth_scale=256,
    )
    stats = import_rgbd_folder(tmp_path / "src", tmp_path / "out", config, progress=False)
    assert stats.n_samples == 1 and stats.n_skipped == 0
    assert (load_arrays(tmp_path / "out")["depth"] == 10.0).all()
    with pytest.raises(pydantic.ValidationError, match="depth_dir"):
        RGBDImportConfig(depth_suffixes=[".png"])
    with pytest.raises(pydantic.ValidationError):
        RGBDImportConfig(max_depth=1.0, min_depth=2.0)
    with pytest.raises(pydantic.ValidationError):
        RGBDImportConfig(depth_scael=1000)


def test_import_is_all_or_nothing(rgbd_folder, tmp_path, monkeypatch):
    dst = tmp_path / "out"
    config = RGBDImportConfig(height=H, width=W)
    import_rgbd_folder(rgbd_folder, dst, config, progress=False)
    before = read_manifest(dst)

    def crash(*args, **kwargs):
        raise RuntimeError("power cut")

    monkeypatch.setattr(importers_module, "finalize_dataset", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        import_rgbd_folder(rgbd_folder, dst, RGBDImportConfig(height=4, width=4), progress=False)
    assert read_manifest(dst).equals(before)  # the old complete dataset is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]
    with pytest.raises(RuntimeError):
        import_rgbd_folder(rgbd_folder, tmp_path / "fresh", config, progress=False)
    assert not (tmp_path / "fresh").exists() and not (tmp_path / "fresh.partial").exists()

    monkeypatch.undo()
    import_rgbd_folder(rgbd_folder, dst, RGBDImportConfig(height=4, width=4), progress=False)
    assert read_manifest(dst)["height"].tolist() == [4, 4, 4]  # replaced on success
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]


def test_nothing_usable_or_unsafe_destination_is_an_error(tmp_path):
    src = tmp_path / "src"
    _rgb(src / "lonely.png")
    with pytest.raises(DatasetImportError, match="no usable RGB-D pairs.*lonely.png"):
        import_rgbd_folder(src, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("do not delete")
    with pytest.raises(DatasetImportError, match="not a dataset"):
        import_image_folder(src, tmp_path / "precious", progress=False)
    with pytest.raises(DatasetImportError, match="outside the source"):
        import_image_folder(src, src / "dataset", progress=False)
    with pytest.raises(DatasetImportError, match="does not exist"):
        import_image_folder(tmp_path / "nowhere", tmp_path / "out2", progress=False)


def test_import_image_folder_formats_recursive_and_bad_files(tmp_path):
    src = tmp_path / "photos"
    colour = np.zeros((20, 30, 3), dtype=np.uint8)
    colour[..., 2] = 200
    (src / "a" / "b").mkdir(parents=True)
    Image.fromarray(colour).save(src / "one.jpg")
    Image.fromarray(colour).save(src / "a" / "two.webp")
    Image.fromarray(colour).save(src / "a" / "b" / "three.bmp")
    Image.fromarray(colour).save(src / "a" / "b" / "four.tiff")
    Image.fromarray(colour[..., 0]).save(src / "a" / "grey.png")
    Image.fromarray(np.dstack([colour, np.full((20, 30), 255, np.uint8)])).save(src / "rgba.png")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (src / "readme.md").write_text("ignored")
    stats = import_image_folder(
        src, tmp_path / "out", ImageImportConfig(height=10, width=10, shard_size=4), progress=False
    )
    assert stats.n_samples == 6 and stats.n_shards == 2
    assert stats.skipped_by_code == {"unreadable": 1} and stats.skipped[0]["file"] == "broken.jpg"
    arrays = load_arrays(tmp_path / "out")
    assert set(arrays) == {"id", "image", "source"}
    assert arrays["image"].shape == (6, 10, 10, 3)
    assert sorted(arrays["id"].tolist()) == sorted(
        ["one.jpg", "a/two.webp", "a/b/three.bmp", "a/b/four.tiff", "a/grey.png", "rgba.png"]
    )
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["kind"] == "unlabeled" and summary["skipped_by_code"] == {"unreadable": 1}


def test_unexpected_error_on_one_file_is_skipped_not_fatal(rgbd_folder, tmp_path, monkeypatch):
    real_read_depth = importers_module.read_depth

    def flaky(path, **kwargs):
        if path.name == "c.depth.npy":
            raise RuntimeError("decoder bug")
        return real_read_depth(path, **kwargs)

    monkeypatch.setattr(importers_module, "read_depth", flaky)
    stats = import_rgbd_folder(
        rgbd_folder, tmp_path / "out", RGBDImportConfig(height=H, width=W), progress=False
    )
    assert stats.n_samples == 2 and stats.skipped_by_code["error"] == 1
    entry = next(s for s in stats.skipped if s["code"] == "error")
    assert entry == {
        "file": "sub/deeper/c.png",
        "code": "error",
        "reason": "RuntimeError: decoder bug",
    }


def test_split_import_is_deterministic_and_disjoint(tmp_path):
    src = tmp_path / "src"
    for i in range(10):
        _rgb(src / f"f{i}.png", value=i)
        np.save(src / f"f{i}.depth.npy", _depth_field().astype(np.float32))
    _rgb(src / "orphan.png")
    config = RGBDImportConfig(path=str(src), height=H, width=W)
    report = import_rgbd_folder_split(
        config, tmp_path / "train", tmp_path / "val", 0.3, seed=4, progress=False
    )
    assert (report["n_train"], report["n_val"], report["n_skipped"]) == (7, 3, 1)
    assert report["skipped_by_code"] == {"no_depth": 1} and report["train"]["n_samples"] == 7
    train_ids = set(load_arrays(tmp_path / "train")["id"].tolist())
    val_ids = set(load_arrays(tmp_path / "val")["id"].tolist())
    assert not train_ids & val_ids and len(train_ids | val_ids) == 10
    assert read_summary(tmp_path / "val")["parameters"]["split_seed"] == 4
    again = import_rgbd_folder_split(
        config, tmp_path / "t2", tmp_path / "v2", 0.3, seed=4, progress=False
    )
    assert set(load_arrays(tmp_path / "v2")["id"].tolist()) == val_ids and again["n_val"] == 3
    import_rgbd_folder_split(config, tmp_path / "t3", tmp_path / "v3", 0.3, seed=5, progress=False)
    assert set(load_arrays(tmp_path / "v3")["id"].tolist()) != val_ids
    with pytest.raises(DatasetImportError, match="path"):
        import_rgbd_folder(RGBDImportConfig(), tmp_path / "x", progress=False)


def test_split_import_publishes_both_or_neither(tmp_path, monkeypatch):
    src = tmp_path / "src"
    for i in range(4):
        _rgb(src / f"f{i}.png")
        np.save(src / f"f{i}.depth.npy", _depth_field().astype(np.float32))
    real_finalize = importers_module.finalize_dataset
    calls = []

    def fail_second(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 2:
            raise RuntimeError("crash while finishing val")
        return real_finalize(*args, **kwargs)

    monkeypatch.setattr(importers_module, "finalize_dataset", fail_second)
    with pytest.raises(RuntimeError, match="crash"):
        import_rgbd_folder_split(src, tmp_path / "train", tmp_path / "val", 0.5, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]
