"""Bad source files under `depth-distill data import-rgbd` / `import-images`, for every layout.

Each bad sample is skipped, counted and named (the printed summary and summary.json say which
file and why) and never stops the import; an import where every sample is bad fails with one
line naming the source and the count, and leaves the destination as it was (or absent).
"""

from __future__ import annotations

import os
import tarfile

import h5py
import numpy as np
import pytest
from PIL import Image

from depth_core.data.manifest import read_summary
from orchestration.commands import data as command
from tests.helpers import run_command

H, W = 4, 6
GOOD_DEPTH = np.full((H, W), 2.5, np.float32)


# ------------------------------------------------------------------ tiny layouts


def _rgb(path, size=(H, W)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), 90, np.uint8)).save(path, quality=95)


def _npy(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array)


def _hdf5(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        handle.create_dataset("dataset", data=array)


def _png16(path, array):
    """Metres as Virtual KITTI 2 centimetres (16-bit); a non-2-D array is saved as it is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.ndim == 2 and array.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            array = np.nan_to_num(array * 100.0, nan=0.0, posinf=65535).clip(0, 65535)
        array = array.astype(np.uint16)
    Image.fromarray(array).save(path)


def _pfm(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.asarray(array, np.float32)
    magic = "Pf" if array.ndim == 2 else "PF"
    header = f"{magic}\n{array.shape[1]} {array.shape[0]}\n-1.0\n".encode()
    path.write_bytes(header + np.ascontiguousarray(array[::-1]).astype("<f4").tobytes())


# name -> (image path, depth path, depth writer, extra CLI args) for frame `i`
LAYOUTS = {
    "folder": (
        lambda i: f"room/img_{i}.png",
        lambda i: f"room/img_{i}_depth.npy",
        _npy,
        [],
    ),
    "hypersim": (
        lambda i: f"ai_001_002/images/scene_cam_00_final_preview/frame.{i:04d}.tonemap.jpg",
        lambda i: f"ai_001_002/images/scene_cam_00_geometry_hdf5/frame.{i:04d}.depth_meters.hdf5",
        _hdf5,
        ["--format", "hypersim"],
    ),
    "tartanair": (
        lambda i: f"office/Easy/P000/image_left/{i:06d}_left.png",
        lambda i: f"office/Easy/P000/depth_left/{i:06d}_left_depth.npy",
        _npy,
        ["--format", "tartanair"],
    ),
    "vkitti2": (
        lambda i: f"Scene01/clone/frames/rgb/Camera_0/rgb_{i:05d}.jpg",
        lambda i: f"Scene01/clone/frames/depth/Camera_0/depth_{i:05d}.png",
        _png16,
        ["--format", "vkitti2"],
    ),
    "blendedmvs": (
        lambda i: f"5a3ca9cb270f55289a1c2c9b/blended_images/{i:08d}.jpg",
        lambda i: f"5a3ca9cb270f55289a1c2c9b/rendered_depth_maps/{i:08d}.pfm",
        _pfm,
        ["--format", "blendedmvs"],
    ),
}


def _frame(src, layout, i, depth=GOOD_DEPTH, image_size=(H, W)):
    """Write frame `i` of `layout`; returns the depth file's path below `src`."""
    image, depth_name, write, _ = LAYOUTS[layout]
    _rgb(src / image(i), image_size)
    write(src / depth_name(i), depth)
    return depth_name(i)


def _source(tmp_path, layout, n_good=2):
    src = tmp_path / f"{layout}-src"
    for i in range(n_good):
        _frame(src, layout, i)
    return src


def _import(src, dst, layout, *extra):
    argv = ["data", "import-rgbd", str(src), str(dst), *LAYOUTS[layout][3]]
    size = ["--height", str(H), "--width", str(W), "--depth-resize", "nearest", "--quiet"]
    return run_command(command, [*argv, *size, *extra])


def _image_of(layout, i):
    return LAYOUTS[layout][0](i)


def _check_one_skipped(capsys, src, dst, layout, bad_index, code, *reason_words):
    """The import succeeds with the good frames; the bad one is printed and in summary.json."""
    assert _import(src, dst, layout) == 0
    printed = capsys.readouterr().out
    name = _image_of(layout, bad_index)
    assert "imported 2 samples" in printed, printed
    assert f"skipped 1 files: {code} 1" in printed, printed
    line = next(line for line in printed.splitlines() if name in line)
    for word in reason_words:
        assert word in line, line
    summary = read_summary(dst)
    assert summary["n_samples"] == 2 and summary["skipped_by_code"] == {code: 1}
    assert summary["skipped"][0]["file"] == name
    return summary["skipped"][0]["reason"]


ALL_LAYOUTS = list(LAYOUTS)


# ------------------------------------------------------------------ 1. truncated files


@pytest.mark.parametrize("layout", ALL_LAYOUTS)
def test_a_truncated_depth_file_is_skipped_and_named(tmp_path, capsys, layout):
    src = _source(tmp_path, layout)
    depth = src / _frame(src, layout, 2)
    data = depth.read_bytes()
    depth.write_bytes(data[: len(data) // 2])
    reason = _check_one_skipped(capsys, src, tmp_path / "out", layout, 2, "unreadable")
    assert depth.name in reason


# ------------------------------------------------------------------ 2. wrong shape or dtype


@pytest.mark.parametrize("layout", ALL_LAYOUTS)
def test_depth_of_another_size_than_its_image_is_skipped(tmp_path, capsys, layout):
    src = _source(tmp_path, layout)
    _frame(src, layout, 2, depth=np.full((H + 1, W + 2), 3.0, np.float32))
    reason = _check_one_skipped(capsys, src, tmp_path / "out", layout, 2, "size_mismatch")
    assert f"image is {W}x{H}" in reason and f"is {W + 2}x{H + 1}" in reason


@pytest.mark.parametrize("layout", ["folder", "vkitti2"])
def test_an_rgb_png_where_16_bit_depth_is_expected_is_skipped(tmp_path, capsys, layout):
    src = _source(tmp_path, layout)
    name = LAYOUTS[layout][1](2)
    if layout == "folder":
        name = name.replace(".npy", ".png")
    _rgb(src / _image_of(layout, 2))
    _rgb(src / name)
    reason = _check_one_skipped(capsys, src, tmp_path / "out", layout, 2, _rgb_code(layout))
    assert "mode RGB" in reason and src.joinpath(name).name in reason


def _rgb_code(layout):
    return "bad_depth" if layout == "vkitti2" else "unreadable"


COMPLEX = np.full((H, W), 2.5 + 1j, np.complex64)
STRINGS = np.full((H, W), "far", dtype="S3")


@pytest.mark.parametrize("layout", ["folder", "hypersim", "tartanair"])
@pytest.mark.parametrize("values", [COMPLEX, STRINGS], ids=["complex", "strings"])
def test_non_real_depth_values_are_skipped(tmp_path, capsys, layout, values):
    src = _source(tmp_path, layout)
    depth = src / _frame(src, layout, 2, depth=values)
    reason = _check_one_skipped(capsys, src, tmp_path / "out", layout, 2, "unreadable")
    assert depth.name in reason
    assert str(values.dtype) in reason


def test_a_three_channel_pfm_is_skipped(tmp_path, capsys):
    src = _source(tmp_path, "blendedmvs")
    _frame(src, "blendedmvs", 2, depth=np.full((H, W, 3), 2.0, np.float32))
    reason = _check_one_skipped(capsys, src, tmp_path / "out", "blendedmvs", 2, "bad_depth")
    assert "3 channels" in reason


def test_a_three_dimensional_hypersim_depth_is_skipped(tmp_path, capsys):
    src = _source(tmp_path, "hypersim")
    _frame(src, "hypersim", 2, depth=np.full((H, W, 2), 2.0, np.float32))
    reason = _check_one_skipped(capsys, src, tmp_path / "out", "hypersim", 2, "unreadable")
    assert f"shape ({H}, {W}, 2)" in reason


# ------------------------------------------------------------------ 3. all-invalid depth


@pytest.mark.parametrize("layout", ALL_LAYOUTS)
@pytest.mark.parametrize("value", [0.0, np.nan, np.inf], ids=["zero", "nan", "inf"])
def test_all_invalid_depth_is_skipped(tmp_path, capsys, layout, value):
    src = _source(tmp_path, layout)
    _frame(src, layout, 2, depth=np.full((H, W), value, np.float32))
    reason = _check_one_skipped(capsys, src, tmp_path / "out", layout, 2, "no_valid_depth")
    assert "no valid depth pixel" in reason


# ------------------------------------------------------------------ 4. symlink loops


@pytest.mark.parametrize("layout", ALL_LAYOUTS)
def test_a_directory_symlink_loop_is_named_and_does_not_hang(tmp_path, capsys, layout):
    src = _source(tmp_path, layout)
    frame_dir = (src / _image_of(layout, 0)).parent
    os.symlink("..", frame_dir / "loop", target_is_directory=True)
    assert _import(src, tmp_path / "out", layout) == 0
    printed = capsys.readouterr().out
    assert "imported 2 samples" in printed, printed
    loop = (frame_dir / "loop").relative_to(src).as_posix()
    summary = read_summary(tmp_path / "out")
    target = frame_dir.parent.relative_to(src).as_posix()
    target = f"{src} (the source folder)" if target == "." else target
    assert summary["skipped"] == [
        {
            "file": loop,
            "code": "symlink_loop",
            "reason": f"folder symlink to {target}, which is already searched; not followed",
        }
    ]
    assert f"  {loop}: folder symlink" in printed


def test_a_linked_folder_is_searched_once(tmp_path, capsys):
    """A symlink to a folder outside the source is followed (data spread over disks)."""
    elsewhere = _source(tmp_path, "folder")
    src = tmp_path / "src"
    src.mkdir()
    os.symlink(elsewhere / "room", src / "room", target_is_directory=True)
    os.symlink(elsewhere / "room", src / "again", target_is_directory=True)
    assert _import(src, tmp_path / "out", "folder") == 0
    summary = read_summary(tmp_path / "out")
    assert summary["n_samples"] == 2
    assert [(s["file"], s["code"]) for s in summary["skipped"]] == [("room", "symlink_loop")]


def test_image_import_survives_a_symlink_loop(tmp_path, capsys):
    src = tmp_path / "photos"
    _rgb(src / "a.png")
    os.symlink(".", src / "self", target_is_directory=True)
    argv = ["data", "import-images", str(src), str(tmp_path / "out"), "--quiet"]
    assert run_command(command, [*argv, "--height", str(H), "--width", str(W)]) == 0
    summary = read_summary(tmp_path / "out")
    assert summary["n_samples"] == 1 and summary["skipped"][0]["file"] == "self"


# ------------------------------------------------------------------ all bad: nothing changes


def _previous_dataset(tmp_path, layout):
    dst = tmp_path / "out"
    assert _import(_source(tmp_path / "before", layout), dst, layout) == 0
    return dst, sorted(p.name for p in dst.iterdir()), (dst / "summary.json").read_bytes()


@pytest.mark.parametrize("layout", ALL_LAYOUTS)
def test_all_bad_fails_in_one_line_and_keeps_the_previous_dataset(tmp_path, capsys, layout):
    dst, files, summary = _previous_dataset(tmp_path, layout)
    src = tmp_path / "bad"
    for i in range(3):
        _frame(src, layout, i, depth=np.zeros((H, W), np.float32))
    capsys.readouterr()
    assert _import(src, dst, layout) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert str(src) in err and "3 skipped" in err and "no_valid_depth" in err
    assert sorted(p.name for p in dst.iterdir()) == files
    assert (dst / "summary.json").read_bytes() == summary
    assert [p.name for p in dst.parent.iterdir() if p.name.startswith(".")] == []


def test_all_bad_never_creates_the_destination(tmp_path, capsys):
    src = tmp_path / "bad"
    for i in range(2):
        _frame(src, "tartanair", i, depth=np.full((H, W), "x", dtype="U1"))
    dst = tmp_path / "new" / "out"
    assert _import(src, dst, "tartanair") == 1
    err = capsys.readouterr().err
    assert f"no usable RGB-D pairs in {src} (2 skipped: unreadable 2); " in err
    assert "_left_depth.npy" in err and f"nothing written to {dst}" in err
    assert not dst.exists()


def test_a_multi_line_reason_is_printed_on_one_line(tmp_path, capsys):
    """Library errors can span lines; the import's one error line must stay one line."""
    src = tmp_path / "bad"
    depth = src / _frame(src, "blendedmvs", 0)
    depth.write_bytes(b"Pf\n")
    assert _import(src, tmp_path / "out", "blendedmvs") == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


# ------------------------------------------------------------------ webdataset tars


def _tar_import(src, dst, *extra):
    argv = ["data", "import-rgbd", str(src), str(dst), "--output-format", "webdataset"]
    return run_command(command, [*argv, "--quiet", *extra])


def _tar_source(tmp_path, bad=None):
    src = tmp_path / "src"
    for i in range(2):
        _rgb(src / f"img_{i}.png")
        _png16(src / f"img_{i}_depth.png", GOOD_DEPTH)
    if bad is not None:
        _rgb(src / "img_2.png")
        bad(src / "img_2_depth.png")
    return src


def _truncate(path):
    _png16(path, GOOD_DEPTH)
    path.write_bytes(path.read_bytes()[:20])


@pytest.mark.parametrize(
    "bad, words",
    [
        (_truncate, ["img_2_depth.png", "cannot read"]),
        (lambda p: _rgb(p), ["img_2_depth.png", "mode RGB"]),
        (lambda p: _png16(p, np.zeros((H, W), np.float32)), ["no valid depth pixel"]),
        (lambda p: _png16(p, np.ones((H + 1, W), np.float32)), ["image is 6x4"]),
    ],
    ids=["truncated", "rgb", "all_zero", "wrong_size"],
)
def test_tars_skip_and_name_bad_depth_maps(tmp_path, capsys, bad, words):
    src, dst = _tar_source(tmp_path, bad), tmp_path / "tars"
    assert _tar_import(src, dst) == 0
    printed = capsys.readouterr().out
    assert "wrote 2 samples into 1 tars" in printed and "skipped 1 files" in printed
    line = next(line for line in printed.splitlines() if line.startswith("  img_2.png: "))
    for word in words:
        assert word in line, line
    with tarfile.open(dst / "rgbd-000000.tar") as tar:
        assert not any(name.startswith("img_2") for name in tar.getnames())


def test_tars_all_bad_keep_the_previous_tars_and_create_nothing(tmp_path, capsys):
    good, dst = _tar_source(tmp_path / "good"), tmp_path / "tars"
    assert _tar_import(good, dst, "--shard-size", "1") == 0
    before = {p.name: p.read_bytes() for p in dst.iterdir()}
    assert sorted(before) == ["rgbd-000000.tar", "rgbd-000001.tar"]
    bad = tmp_path / "bad"
    for i in range(2):
        _rgb(bad / f"img_{i}.png")
        _rgb(bad / f"img_{i}_depth.png")
    capsys.readouterr()
    assert _tar_import(bad, dst) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and "2 skipped" in err, err
    assert {p.name: p.read_bytes() for p in dst.iterdir()} == before
    assert [p.name for p in dst.parent.iterdir() if p.name.startswith(".")] == []
    assert _tar_import(bad, tmp_path / "fresh") == 1
    assert not (tmp_path / "fresh").exists()


def test_tars_replace_the_previous_set_whole(tmp_path, capsys):
    """A smaller rerun leaves no tar of the previous run beside the new ones."""
    src, dst = _tar_source(tmp_path), tmp_path / "tars"
    assert _tar_import(src, dst, "--shard-size", "1") == 0
    assert _tar_import(src, dst, "--shard-size", "2") == 0
    assert sorted(p.name for p in dst.iterdir()) == ["rgbd-000000.tar"]


def test_tars_refuse_a_folder_that_is_not_a_tar_set(tmp_path, capsys):
    src, dst = _tar_source(tmp_path), tmp_path / "mine"
    dst.mkdir()
    (dst / "notes.txt").write_text("keep me")
    assert _tar_import(src, dst) == 1
    assert "is a non-empty folder that is not a set of rgbd tars" in capsys.readouterr().err
    assert (dst / "notes.txt").read_text() == "keep me"


def test_image_tars_skip_and_name_a_truncated_image(tmp_path, capsys):
    src = tmp_path / "photos"
    _rgb(src / "a.png")
    _rgb(src / "b.png")
    (src / "b.png").write_bytes((src / "b.png").read_bytes()[:30])
    argv = ["data", "import-images", str(src), str(tmp_path / "tars"), "--format", "webdataset"]
    assert run_command(command, [*argv, "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 1 samples" in printed and "  b.png: cannot read image" in printed


# ------------------------------------------------------------------ interrupted imports


def _interrupt_on_call(real, n):
    """`real`, except that its `n`-th call raises KeyboardInterrupt (Ctrl-C mid-import)."""
    calls = []

    def interrupt(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    return interrupt


def test_an_interrupted_import_keeps_the_previous_dataset(tmp_path, capsys, monkeypatch):
    from depth_core.data import importers

    dst, files, summary = _previous_dataset(tmp_path, "vkitti2")
    src = _source(tmp_path / "new", "vkitti2", n_good=3)
    monkeypatch.setattr(importers, "fit_depth", _interrupt_on_call(importers.fit_depth, 3))
    with pytest.raises(KeyboardInterrupt):
        _import(src, dst, "vkitti2", "--shard-size", "1")
    assert sorted(p.name for p in dst.iterdir()) == files
    assert (dst / "summary.json").read_bytes() == summary
    assert [p.name for p in dst.parent.iterdir() if p.name.startswith(".")] == []


def test_an_interrupted_tar_export_keeps_the_previous_tars(tmp_path, capsys, monkeypatch):
    from depth_core.data import tar_writer

    src, dst = _tar_source(tmp_path), tmp_path / "tars"
    assert _tar_import(src, dst) == 0
    before = {p.name: p.read_bytes() for p in dst.iterdir()}
    interrupt = _interrupt_on_call(tar_writer.read_rgbd_pair, 2)
    monkeypatch.setattr(tar_writer, "read_rgbd_pair", interrupt)
    with pytest.raises(KeyboardInterrupt):
        _tar_import(src, dst, "--shard-size", "1")
    assert {p.name: p.read_bytes() for p in dst.iterdir()} == before
    assert [p.name for p in dst.parent.iterdir() if p.name.startswith(".")] == []
