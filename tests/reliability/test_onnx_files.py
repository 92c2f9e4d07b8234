"""Bad .onnx files under `depth-distill predict --checkpoint x.onnx` and `load_depth_model`.

A truncated export, an export whose depth-distill metadata was edited, and one whose external
tensor data lies outside its folder each fail with one line naming the file (and the metadata
key or the data location) before any output is written and, for external data, before
onnxruntime opens the file.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from depth_core.export import OnnxModelError, export_model, load_onnx_model, runtime
from depth_core.export.metadata import (
    CONFIG_KEY,
    DIGEST_KEY,
    FIXED_SIZE_KEY,
    INPUT_FORMAT_KEY,
    INPUT_MULTIPLE_KEY,
)
from depth_core.model_loading import load_depth_model
from depth_core.models import ModelConfig, build_model
from orchestration.commands import predict as predict_command
from tests.helpers import run_command


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """A real dynamic-shape export of a narrow Lite0 student (about ten seconds, once)."""
    torch.manual_seed(0)
    config = ModelConfig(backbone="tf_efficientnet_lite0", features=8, img_size=64)
    path = tmp_path_factory.mktemp("export") / "student.onnx"
    export_model(build_model(config).eval(), path)
    return path


@pytest.fixture
def photo(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    image = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    Image.fromarray(image).save(folder / "a.png")
    return folder


def _predict_fails_in_one_line(model_path, photo, tmp_path, capsys) -> str:
    out = tmp_path / "out"
    argv = ["predict", "--checkpoint", str(model_path), "--input", str(photo)]
    argv += ["--output", str(out), "--device", "cpu", "--quiet"]
    assert run_command(predict_command, argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and str(model_path) in lines[0], lines
    assert not out.exists()
    return lines[0]


def _with_props(source, target, changes: dict[str, str | None]):
    """A copy of `source` with metadata entries set (None removes the entry)."""
    model = onnx.load(str(source))
    props = {p.key: p.value for p in model.metadata_props}
    props.update(changes)
    del model.metadata_props[:]
    for key, value in props.items():
        if value is not None:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
    onnx.save(model, str(target))
    return target


# ------------------------------------------------------------------ (1) truncated files


def _without_metadata(data: bytes) -> bytes:
    """The file cut just before its metadata_props: still valid protobuf."""
    model = onnx.load_from_string(data)
    del model.metadata_props[:]
    cut = model.SerializeToString()
    assert data.startswith(cut)
    return cut


@pytest.mark.parametrize(
    ("cut", "reason"),
    [
        (lambda data: data[: len(data) // 2], "not a readable ONNX file, truncated or corrupt"),
        (lambda data: data[:10], "not a readable ONNX file, truncated or corrupt"),
        (_without_metadata, "names depth-distill as its producer, so it was truncated"),
    ],
    ids=["half", "ten-bytes", "before-metadata"],
)
def test_a_truncated_export_is_named_in_one_line(export, photo, tmp_path, capsys, cut, reason):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(cut(export.read_bytes()))
    assert reason in _predict_fails_in_one_line(broken, photo, tmp_path, capsys)
    with pytest.raises(OnnxModelError, match="broken.onnx"):
        load_depth_model(broken)


# ------------------------------------------------------------------ (2) edited metadata


def _edited_config(export, **changes) -> str:
    props = {p.key: p.value for p in onnx.load(str(export)).metadata_props}
    return json.dumps({**json.loads(props[CONFIG_KEY]), **changes})


EDITS = {
    "input-size": lambda export: {CONFIG_KEY: _edited_config(export, img_size=96)},
    "normalisation": lambda export: {CONFIG_KEY: _edited_config(export, input_mean=[0, 0, 0])},
    "output-kind": lambda export: {CONFIG_KEY: _edited_config(export, output_activation="relu")},
    "non-json": lambda export: {CONFIG_KEY: "{not json"},
    "input-format": lambda export: {INPUT_FORMAT_KEY: "uint8"},
    "stride": lambda export: {INPUT_MULTIPLE_KEY: "0,0"},
    "fixed-size-added": lambda export: {FIXED_SIZE_KEY: "64,64"},
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_edited_metadata_is_refused_naming_the_key(export, photo, tmp_path, capsys, edit):
    changes = EDITS[edit](export)
    edited = _with_props(export, tmp_path / "edited.onnx", changes)
    line = _predict_fails_in_one_line(edited, photo, tmp_path, capsys)
    assert "changed after export" in line and all(key in line for key in changes)


def test_a_broken_digest_is_named(export, tmp_path):
    edited = _with_props(export, tmp_path / "edited.onnx", {DIGEST_KEY: "[oops"})
    with pytest.raises(OnnxModelError, match=f"edited.onnx: .*{DIGEST_KEY}"):
        load_onnx_model(edited)


OLD_EXPORT_EDITS = {  # exports written before the digest: each value is still checked
    "non-json-config": ({CONFIG_KEY: "{not json"}, "invalid metadata depth_distill.model_config"),
    "unknown-format": ({INPUT_FORMAT_KEY: "bgr16"}, "expected one of float, uint8"),
    "format-vs-graph": ({INPUT_FORMAT_KEY: "uint8"}, "'uint8' but the graph's input 'image' is"),
    "zero-stride": ({INPUT_MULTIPLE_KEY: "0,0"}, "input_multiple = '0,0' (both values must"),
    "fixed-size-vs-graph": ({FIXED_SIZE_KEY: "64,64"}, "fixed_size = (64, 64) but the graph"),
    "missing-stride": ({INPUT_MULTIPLE_KEY: None}, "metadata has no depth_distill.input_multiple"),
}


@pytest.mark.parametrize("edit", sorted(OLD_EXPORT_EDITS))
def test_an_export_without_digest_still_has_each_entry_checked(export, tmp_path, edit):
    changes, message = OLD_EXPORT_EDITS[edit]
    edited = _with_props(export, tmp_path / "old.onnx", {DIGEST_KEY: None, **changes})
    with pytest.raises(OnnxModelError, match="old.onnx: ") as error:
        load_onnx_model(edited)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_an_export_without_digest_and_without_edits_loads(export, tmp_path):
    old = _with_props(export, tmp_path / "old.onnx", {DIGEST_KEY: None})
    model, meta = load_onnx_model(old, threads=1)
    assert meta["input_multiple"] == model.input_multiple


# ------------------------------------------------------------------ (3) external data


def _external(export, folder, location: str):
    """`export` saved with its weights in one external file, then pointed at `location`
    (relative to `folder`, or absolute) with the weights moved there."""
    folder.mkdir(parents=True)
    path = folder / "model.onnx"
    model = onnx.load(str(export))
    onnx.save(model, str(path), save_as_external_data=True, location="w.bin", size_threshold=0)
    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save(model, str(path))
    target = folder / location
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(folder / "w.bin", target)
    return path


@pytest.fixture
def no_onnxruntime(monkeypatch):
    """Fail the test if onnxruntime is asked to open anything."""

    def refuse(*args, **kwargs):
        raise AssertionError("onnxruntime opened the file")

    monkeypatch.setattr(runtime, "make_session", refuse)


@pytest.mark.parametrize("where", ["parent", "absolute", "link"])
def test_external_data_outside_the_folder_is_refused_before_onnxruntime(
    export, photo, tmp_path, capsys, no_onnxruntime, where
):
    outside = tmp_path / "elsewhere" / "x.bin"
    location = {"parent": "../elsewhere/x.bin", "absolute": str(outside), "link": "w.bin"}[where]
    path = _external(export, tmp_path / "model", location if where != "link" else "w.bin")
    if where == "link":
        outside.parent.mkdir()
        shutil.move(tmp_path / "model" / "w.bin", outside)
        (tmp_path / "model" / "w.bin").symlink_to(outside)
    line = _predict_fails_in_one_line(path, photo, tmp_path, capsys)
    assert f"external data location {location!r}" in line and "outside the model's folder" in line


def test_external_data_missing_or_short_is_named(export, tmp_path, no_onnxruntime):
    path = _external(export, tmp_path / "model", "w.bin")
    weights = tmp_path / "model" / "w.bin"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(OnnxModelError, match="model.onnx: external data location 'w.bin'.*trunc"):
        load_depth_model(path)
    weights.unlink()
    with pytest.raises(OnnxModelError, match="'w.bin'.*file not found"):
        load_depth_model(path)


@pytest.mark.parametrize("location", ["w.bin", "weights/w.bin"])
def test_external_data_inside_the_folder_loads(export, tmp_path, location):
    path = _external(export, tmp_path / "model", location)
    model, _ = load_depth_model(path)
    reference, _ = load_onnx_model(export, threads=1)
    x = torch.rand(1, 3, 40, 56)
    np.testing.assert_allclose(model(x), reference(x), rtol=1e-5, atol=1e-6)
