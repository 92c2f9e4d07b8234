"""`data import-rgbd --format NAME`: a public set read from its own layout."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from depth_core.data.dataset import load_arrays
from depth_core.data.manifest import read_summary
from orchestration.commands import data as command
from tests.helpers import run_command

H, W = 4, 6


def _main(argv: list[str]) -> int:
    return run_command(command, argv)


def _vkitti2(src):
    frames = src / "Scene06" / "clone" / "frames"
    for index, centimetres in enumerate((1234, 250)):
        rgb = frames / "rgb" / "Camera_0" / f"rgb_{index:05d}.jpg"
        depth = frames / "depth" / "Camera_0" / f"depth_{index:05d}.png"
        rgb.parent.mkdir(parents=True, exist_ok=True)
        depth.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((H, W, 3), 70, np.uint8)).save(rgb)
        raw = np.full((H, W), centimetres, np.uint16)
        raw[0] = 65535
        Image.fromarray(raw).save(depth)
    orphan = frames / "rgb" / "Camera_0" / "rgb_00009.jpg"
    Image.fromarray(np.full((H, W, 3), 70, np.uint8)).save(orphan)
    return src


def test_import_rgbd_reads_a_layout_by_its_format(tmp_path, capsys):
    src = _vkitti2(tmp_path / "vkitti2")
    out = tmp_path / "out"
    size = ["--height", str(H), "--width", str(W), "--depth-resize", "nearest", "--quiet"]
    assert _main(["data", "import-rgbd", str(src), str(out), "--format", "vkitti2", *size]) == 0
    printed = capsys.readouterr().out
    assert "imported 2 samples" in printed and "skipped 1 files: no_depth 1" in printed
    assert "Scene06/clone/frames/rgb/Camera_0/rgb_00009.jpg" in printed
    arrays = load_arrays(out)
    assert arrays["depth"][0, 1, 0] == np.float32(12.34)
    assert arrays["depth"][1, 1, 0] == np.float32(2.5)
    assert not arrays["mask"][:, 0].any()  # the sky row
    assert read_summary(out)["parameters"]["format"] == "vkitti2"


def test_folder_options_are_refused_with_a_layout(tmp_path, capsys):
    src = _vkitti2(tmp_path / "vkitti2")
    argv = ["data", "import-rgbd", str(src), str(tmp_path / "out"), "--format", "vkitti2"]
    assert _main([*argv, "--depth-scale", "100", "--quiet"]) == 1
    assert "depth_scale: only for format 'folder'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_help_names_every_format(capsys):
    with pytest.raises(SystemExit):
        _main(["data", "import-rgbd", "--help"])
    text = capsys.readouterr().out
    for name, expected in [
        ("folder", "by file name"),
        ("hypersim", "depth_meters.hdf5"),
        ("vkitti2", "depth_NNNNN.png"),
        ("tartanair", "_left_depth.npy"),
        ("blendedmvs", "rendered_depth_maps"),
    ]:
        assert f"  {name}: " in text and expected in text
