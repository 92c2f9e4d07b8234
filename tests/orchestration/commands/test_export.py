"""`depth-distill export` and `depth-distill predict` through the export: same files, same maps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from orchestration.commands import export as export_command
from orchestration.commands import predict as predict_command
from tests.depth_core.export.conftest import student_checkpoint
from tests.helpers import run_command


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(checkpoint, onnx file) of the narrow Lite0 student, exported through the CLI."""
    folder = tmp_path_factory.mktemp("export")
    checkpoint, _ = student_checkpoint(folder, "lite0_small")
    onnx_path = folder / "lite0_small.onnx"
    args = ["export", "--checkpoint", str(checkpoint), "--output", str(onnx_path)]
    assert run_command(export_command, args) == 0
    return checkpoint, onnx_path


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "photos"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 255, (37, 53, 3), dtype=np.uint8)).save(src / "wide.png")
    Image.fromarray(rng.integers(0, 255, (90, 40, 3), dtype=np.uint8)).save(src / "sub" / "a.jpg")
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(src / "square.png")
    return src


def _predict(model_path, photos, out) -> int:
    argv = ["predict", "--checkpoint", str(model_path), "--input", str(photos)]
    argv += ["--output", str(out), "--device", "cpu", "--amp", "fp32", "--quiet"]
    return run_command(predict_command, argv)


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_predict_through_onnx_equals_the_pytorch_path(exported, photos, tmp_path):
    checkpoint, onnx_path = exported
    assert _predict(checkpoint, photos, tmp_path / "torch") == 0
    assert _predict(onnx_path, photos, tmp_path / "onnx") == 0
    assert _files(tmp_path / "torch") == _files(tmp_path / "onnx")
    for name in _files(tmp_path / "torch"):
        if name.endswith(".npy"):
            ours, theirs = np.load(tmp_path / "onnx" / name), np.load(tmp_path / "torch" / name)
            assert ours.dtype == theirs.dtype == np.float32 and ours.shape == theirs.shape
            assert np.abs(ours - theirs).max() <= 1e-4 * np.abs(theirs).max()


def test_export_prints_its_report(exported, tmp_path, capsys):
    checkpoint, _ = exported
    out = tmp_path / "u8.onnx"
    args = ["export", "--checkpoint", str(checkpoint), "--output", str(out)]
    assert run_command(export_command, [*args, "--input-format", "uint8"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["input_format"] == "uint8" and report["parity_max_rel_diff"] < 1e-3
    assert report["bytes"] == out.stat().st_size and len(report["sha256"]) == 64


def test_predict_refuses_a_foreign_onnx_file(photos, tmp_path, capsys):
    foreign = tmp_path / "foreign.onnx"
    torch.onnx.export(
        torch.nn.Conv2d(3, 1, 3), (torch.rand(1, 3, 8, 8),), str(foreign), dynamo=False
    )
    assert _predict(foreign, photos, tmp_path / "o") == 1
    err = capsys.readouterr().err
    assert "foreign.onnx" in err and "not a depth-distill export" in err
    assert not (tmp_path / "o").exists()


def test_export_of_a_file_that_is_no_checkpoint_is_named(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"junk")
    args = ["export", "--checkpoint", str(bad), "--output", str(tmp_path / "x.onnx")]
    assert run_command(export_command, args) == 1
    assert "bad.safetensors" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()
