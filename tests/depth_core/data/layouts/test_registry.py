"""The layouts by name, and what `format` means to the importer's settings."""

import numpy as np
import pydantic
import pytest
from PIL import Image

from depth_core.data.importers import (
    FOLDER_ONLY_FIELDS,
    RGBDImportConfig,
    import_rgbd_folder_split,
)
from depth_core.data.layouts import LAYOUTS, format_names, get_layout
from depth_core.data.manifest import read_summary


def test_every_layout_is_registered_under_its_own_name():
    assert format_names() == ("folder", "hypersim", "vkitti2", "tartanair", "blendedmvs")
    for name, layout in LAYOUTS.items():
        assert get_layout(name) is layout and layout.name == name
    with pytest.raises(ValueError, match="unknown RGB-D layout 'folder'"):
        get_layout("folder")  # the generic folder is the importers' own


def test_an_unknown_format_is_refused_naming_the_key():
    with pytest.raises(pydantic.ValidationError, match=r"format\n.*unknown format 'nyu'"):
        RGBDImportConfig(format="nyu")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("depth_scale", 1000.0),
        ("is_disparity", True),
        ("depth_suffixes", ["_d.png"]),
        ("image_dir", "rgb"),
        ("depth_dir", "depth"),
        ("image_extensions", [".png"]),
    ],
)
def test_folder_knobs_are_refused_with_a_layout(key, value):
    assert key in FOLDER_ONLY_FIELDS
    assert getattr(RGBDImportConfig(**{key: value}), key) == value  # the folder's own knob
    with pytest.raises(pydantic.ValidationError, match=f"{key}: only for format 'folder'"):
        RGBDImportConfig(format="vkitti2", **{key: value})


def test_generic_knobs_apply_to_every_format():
    config = RGBDImportConfig(
        format="tartanair", height=8, width=8, min_depth=0.5, max_depth=80.0, depth_resize="mean"
    )
    assert config.max_depth == 80.0


def test_a_layout_splits_like_a_folder(tmp_path):
    src = tmp_path / "vkitti2"
    frames = src / "Scene02" / "morning" / "frames"
    for index in range(4):
        rgb = frames / "rgb" / "Camera_0" / f"rgb_{index:05d}.jpg"
        depth = frames / "depth" / "Camera_0" / f"depth_{index:05d}.png"
        rgb.parent.mkdir(parents=True, exist_ok=True)
        depth.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((4, 4, 3), 50, np.uint8)).save(rgb)
        Image.fromarray(np.full((4, 4), 300 + index, np.uint16)).save(depth)
    config = RGBDImportConfig(format="vkitti2", path=str(src), height=4, width=4)
    report = import_rgbd_folder_split(config, tmp_path / "train", tmp_path / "val", 0.25)
    assert (report["n_train"], report["n_val"], report["n_skipped"]) == (3, 1, 0)
    assert read_summary(tmp_path / "train")["parameters"]["format"] == "vkitti2"
