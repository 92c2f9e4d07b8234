"""`depth-distill predict`: original-resolution .npy + colour .png per image, bad files skipped."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from depth_core.inference import predict_disparity
from depth_core.models import ModelConfig, build_model, save_checkpoint
from orchestration.commands import predict as command
from tests.helpers import TINY_VIT, run_command


def _main(argv: list[str]) -> int:
    return run_command(command, argv)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(ModelConfig(**TINY_VIT))
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.safetensors", model), model


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "photos"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 255, (37, 53, 3), dtype=np.uint8)).save(src / "wide.png")
    Image.fromarray(rng.integers(0, 255, (70, 20, 3), dtype=np.uint8)).save(
        src / "sub" / "wide.jpg"
    )
    Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(src / "grey.png")
    (src / "broken.png").write_bytes(b"not an image")
    (src / "notes.txt").write_text("ignored")
    return src


def test_folder_predictions_at_original_resolution(checkpoint, photos, tmp_path, capsys):
    out = tmp_path / "out"
    code = _main(
        [
            "predict",
            "--checkpoint",
            str(checkpoint[0]),
            "--input",
            str(photos),
            "--output",
            str(out),
            "--device",
            "cpu",
            "--amp",
            "fp32",
            "--batch-size",
            "2",
            "--quiet",
        ]
    )
    assert code == 0
    wide = np.load(out / "wide.npy")
    assert wide.dtype == np.float32 and wide.shape == (37, 53) and (wide >= 0).all()
    assert np.load(out / "sub" / "wide.npy").shape == (
        70,
        20,
    )  # same stem, other folder: kept apart
    assert np.load(out / "grey.npy").shape == (16, 16)
    with Image.open(out / "sub" / "wide.png") as png:
        assert png.size == (20, 70) and png.mode == "RGB"
    expected = predict_disparity(
        checkpoint[1], [np.array(Image.open(photos / "wide.png"))], amp="fp32"
    )[0]
    np.testing.assert_allclose(wide, expected, rtol=1e-4, atol=1e-5)
    printed = capsys.readouterr().out
    assert "wrote 3 disparity maps" in printed
    assert "skipped 1 unreadable" in printed and "broken.png" in printed
    assert not (out / "broken.npy").exists() and not (out / "notes.npy").exists()


def test_single_file(checkpoint, photos, tmp_path):
    out = tmp_path / "one"
    assert (
        _main(
            [
                "predict",
                "--checkpoint",
                str(checkpoint[0]),
                "--input",
                str(photos / "grey.png"),
                "--output",
                str(out),
                "--device",
                "cpu",
                "--quiet",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == ["grey.npy", "grey.png"]


def test_errors_are_reported(checkpoint, photos, tmp_path, capsys):
    assert (
        _main(
            [
                "predict",
                "--checkpoint",
                str(tmp_path / "nope.safetensors"),
                "--input",
                str(photos),
                "--output",
                str(tmp_path / "o"),
                "--quiet",
            ]
        )
        == 1
    )
    assert "nope.safetensors" in capsys.readouterr().err
    assert (
        _main(
            [
                "predict",
                "--checkpoint",
                str(checkpoint[0]),
                "--input",
                str(tmp_path / "missing"),
                "--output",
                str(tmp_path / "o"),
                "--quiet",
            ]
        )
        == 1
    )
    assert "missing" in capsys.readouterr().err
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "x.png").write_bytes(b"junk")
    assert (
        _main(
            [
                "predict",
                "--checkpoint",
                str(checkpoint[0]),
                "--input",
                str(only_bad),
                "--output",
                str(tmp_path / "o"),
                "--quiet",
            ]
        )
        == 1
    )
