from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from depth_core.data.dataset import load_arrays
from depth_core.data.manifest import read_summary
from orchestration.commands import data as command
from tests.helpers import run_command

H, W = 6, 8


def _main(argv: list[str]) -> int:
    return run_command(command, argv)


@pytest.fixture
def rgbd_src(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a", "b"):
        Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(src / f"{name}.png")
        Image.fromarray(np.full((H, W), 2500, np.uint16)).save(src / f"{name}_depth.png")
    Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(src / "orphan.png")
    return src


def test_import_rgbd_prints_summary_and_applies_options(rgbd_src, tmp_path, capsys):
    code = _main(
        [
            "data",
            "import-rgbd",
            str(rgbd_src),
            str(tmp_path / "out"),
            "--depth-scale",
            "1000",
            "--height",
            "4",
            "--width",
            "4",
            "--max-depth",
            "10",
            "--quiet",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert (
        "imported 2 samples" in out and "skipped 1 files: no_depth 1" in out and "orphan.png" in out
    )
    arrays = load_arrays(tmp_path / "out")
    assert arrays["depth"].shape == (2, 4, 4) and np.allclose(arrays["depth"], 2.5)
    params = read_summary(tmp_path / "out")["parameters"]
    assert params["depth_scale"] == 1000.0 and params["max_depth"] == 10.0 and params["height"] == 4

    assert (
        _main(
            [
                "data",
                "import-rgbd",
                str(rgbd_src),
                str(tmp_path / "disp"),
                "--disparity",
                "--depth-scale",
                "1000",
                "--height",
                "4",
                "--width",
                "4",
                "--quiet",
            ]
        )
        == 0
    )
    assert np.allclose(load_arrays(tmp_path / "disp")["depth"], 0.4)


def test_import_images_and_preview(rgbd_src, tmp_path, capsys):
    assert (
        _main(
            [
                "data",
                "import-images",
                str(rgbd_src),
                str(tmp_path / "imgs"),
                "--height",
                "4",
                "--width",
                "4",
                "--quiet",
            ]
        )
        == 0
    )
    # the 16-bit depth PNGs are images too when imported as plain pictures
    assert "imported 5 samples" in capsys.readouterr().out
    assert (
        _main(
            [
                "data",
                "preview",
                str(tmp_path / "imgs"),
                "--out",
                str(tmp_path / "sheet.png"),
                "-n",
                "3",
            ]
        )
        == 0
    )
    assert "sheet.png" in capsys.readouterr().out
    assert Image.open(tmp_path / "sheet.png").size[0] > 3 * 4 * 16


def test_import_errors_exit_nonzero(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert (
        _main(["data", "import-images", str(tmp_path / "empty"), str(tmp_path / "out"), "--quiet"])
        == 1
    )
    assert "no usable images" in capsys.readouterr().err
    assert (
        _main(
            [
                "data",
                "import-rgbd",
                str(tmp_path / "empty"),
                str(tmp_path / "out"),
                "--depth-suffix",
                ".png",
            ]
        )
        == 1
    )
    assert "depth_dir" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
