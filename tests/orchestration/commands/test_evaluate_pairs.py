from __future__ import annotations

import argparse
import json
import types

import numpy as np
import pytest
from PIL import Image

from orchestration import cli
from orchestration.commands import evaluate_pairs as command

ANNOTATIONS = {
    "indoor/a.png": [
        {"point1": [10, 2], "point2": [1, 2], "closer_point": "point1"},
        {"point1": [3, 5], "point2": [11, 0], "closer_point": "point1"},
    ],
    "outdoor/b.png": [{"point1": [9, 9], "point2": [0, 0], "closer_point": "point1"}],
    "outdoor/missing.png": [{"point1": [1, 1], "point2": [2, 2], "closer_point": "point2"}],
}


def _parser():
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers(dest="command", required=True))
    return parser


@pytest.fixture
def benchmark_dir(tmp_path):
    for key in ("indoor/a.png", "outdoor/b.png"):
        (tmp_path / "images" / key).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(tmp_path / "images" / key)
    (tmp_path / "annotations.json").write_text(json.dumps(ANNOTATIONS))
    (tmp_path / "model.safetensors").write_bytes(b"placeholder")
    return tmp_path


@pytest.fixture
def fake_models(monkeypatch):
    """A stand-in for depth_core.inference.load_for_inference: a 'model' whose disparity is the
    row index (lower in the image = nearer), so the expected accuracy is known."""
    calls = {}

    def predict(images, batch_size=8, flip_tta=False, scales=(1.0,)):
        calls.setdefault("batches", []).append(len(images))
        calls["tta"] = (flip_tta, tuple(scales))
        return [
            np.repeat(np.arange(im.shape[0], dtype=np.float32)[:, None], im.shape[1], 1)
            for im in images
        ]

    def load_for_inference(path, device="auto", amp="fp32"):
        calls["checkpoint"] = (str(path), device, amp)
        return types.SimpleNamespace(predict=predict)

    monkeypatch.setattr(command, "load_for_inference", load_for_inference)
    return calls


def test_command_is_listed_in_the_cli():
    assert cli.COMMAND_MODULES["evaluate-pairs"] == "evaluate_pairs"


def test_evaluate_pairs_prints_table_and_writes_json(benchmark_dir, fake_models, capsys):
    out_json = benchmark_dir / "result" / "pairs.json"
    args = _parser().parse_args(
        [
            "evaluate-pairs",
            "--checkpoint",
            str(benchmark_dir / "model.safetensors"),
            "--annotations",
            str(benchmark_dir / "annotations.json"),
            "--images",
            str(benchmark_dir / "images"),
            "--json",
            str(out_json),
            "--batch-size",
            "1",
            "--flip-tta",
            "--scales",
            "0.75",
            "1.0",
        ]
    )
    assert args.func(args) == 0
    assert fake_models["checkpoint"][1:] == ("auto", "fp32") and fake_models["batches"] == [1, 1]
    assert fake_models["tta"] == (True, (0.75, 1.0))
    printed = capsys.readouterr().out
    assert "indoor" in printed and "outdoor" in printed and "missing (skipped): 1" in printed
    result = json.loads(out_json.read_text())
    # indoor: row 10 > 1 right, row 3 < 11 wrong; outdoor: row 9 > 0 right
    assert result["n_pairs"] == 3 and result["accuracy"] == pytest.approx(2 / 3)
    assert result["per_scene"]["indoor"]["accuracy"] == 0.5
    assert result["missing_images"] == ["outdoor/missing.png"]
    assert result["checkpoint"].endswith("model.safetensors")


def test_bad_annotations_and_paths_exit_with_a_message(benchmark_dir, fake_models, capsys):
    (benchmark_dir / "bad.json").write_text('{"x.png": [{"point1": [1, 2]}]}')
    base = [
        "evaluate-pairs",
        "--checkpoint",
        str(benchmark_dir / "model.safetensors"),
        "--images",
        str(benchmark_dir / "images"),
    ]
    args = _parser().parse_args(base + ["--annotations", str(benchmark_dir / "bad.json")])
    assert args.func(args) == 2
    assert "bad.json" in capsys.readouterr().err
    args = _parser().parse_args(
        [
            "evaluate-pairs",
            "--checkpoint",
            str(benchmark_dir / "nope.safetensors"),
            "--annotations",
            str(benchmark_dir / "annotations.json"),
            "--images",
            str(benchmark_dir / "images"),
        ]
    )
    assert args.func(args) == 2
    assert "nope.safetensors" in capsys.readouterr().err


def test_format_table_handles_no_pairs():
    text = command.format_table(
        {
            "per_scene": {},
            "n_pairs": 0,
            "accuracy": None,
            "n_images": 0,
            "n_missing_images": 2,
            "n_ties": 0,
        }
    )
    assert "all" in text and "-" in text and "missing (skipped): 2" in text


def test_with_a_real_tiny_checkpoint(benchmark_dir, capsys):
    models = pytest.importorskip("depth_core.models")
    pytest.importorskip("depth_core.inference")
    config = models.ModelConfig(
        backbone="vit_tiny_patch16_224",
        features=8,
        img_size=32,
        patch_size=8,
        backbone_kwargs={"depth": 4, "embed_dim": 32, "num_heads": 2},
    )
    path = benchmark_dir / "tiny.safetensors"
    models.save_checkpoint(path, models.build_model(config, load_pretrained=False))
    args = _parser().parse_args(
        [
            "evaluate-pairs",
            "--checkpoint",
            str(path),
            "--device",
            "cpu",
            "--annotations",
            str(benchmark_dir / "annotations.json"),
            "--images",
            str(benchmark_dir / "images"),
            "--json",
            str(benchmark_dir / "r.json"),
        ]
    )
    assert args.func(args) == 0
    result = json.loads((benchmark_dir / "r.json").read_text())
    assert result["n_pairs"] == 3 and result["n_images"] == 2 and result["n_missing_images"] == 1
    assert 0.0 <= result["accuracy"] <= 1.0
