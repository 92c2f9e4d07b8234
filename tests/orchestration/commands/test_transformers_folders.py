"""predict, evaluate and evaluate-pairs take a Hugging Face depth-estimation folder as
--checkpoint, exactly like a depth-distill checkpoint."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
from PIL import Image

from depth_core.inference import predict_disparity
from depth_core.model_loading import load_depth_model
from orchestration.commands import evaluate, evaluate_pairs, predict
from tests.helpers import run_command, save_tiny_depth_anything

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_depth_anything(tmp_path_factory.mktemp("hf") / "depth-anything-tiny")


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "photos" / "indoor"
    src.mkdir(parents=True)
    for name, shape in {"a": (30, 40, 3), "b": (25, 50, 3)}.items():
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(src / f"{name}.png")
        rows = np.arange(1, shape[0] + 1, dtype=np.float32)[:, None]
        depth_mm = np.broadcast_to(10_000.0 / rows, shape[:2]).astype(np.uint16)
        Image.fromarray(depth_mm).save(src / f"{name}_depth.png")
    return src


def test_predict_with_a_folder(folder, photos, tmp_path):
    out = tmp_path / "out"
    argv = ["predict", "--checkpoint", str(folder), "--input", str(photos), "--output", str(out)]
    argv += ["--device", "cpu", "--amp", "fp32", "--batch-size", "1", "--quiet"]
    assert run_command(predict, argv) == 0
    model, _ = load_depth_model(folder)
    image = np.array(Image.open(photos / "a.png"))
    expected = predict_disparity(model, [image], amp="fp32")[0]
    np.testing.assert_allclose(np.load(out / "a.npy"), expected, rtol=1e-5, atol=1e-6)


def test_evaluate_with_a_folder(folder, photos, tmp_path, capsys):
    report = tmp_path / "eval.json"
    argv = ["evaluate", "--checkpoint", str(folder), "--data", str(photos), "--json", str(report)]
    code = run_command(evaluate, [*argv, "--depth-scale", "1000", "--device", "cpu", "--quiet"])
    assert code == 0, capsys.readouterr().err
    results = json.loads(report.read_text())["results"]
    assert results["depth-anything-tiny"]["n_images"] == 2
    assert set(results["depth-anything-tiny"]) == set(results[evaluate.BASELINE])


def test_evaluate_pairs_with_a_folder(folder, photos, tmp_path):
    annotations = tmp_path / "annotations.json"
    pair = {"point1": [20, 5], "point2": [2, 5], "closer_point": "point1"}
    annotations.write_text(json.dumps({"indoor/a.png": [pair], "indoor/b.png": [pair]}))
    result = tmp_path / "pairs.json"
    argv = ["evaluate-pairs", "--checkpoint", str(folder), "--annotations", str(annotations)]
    argv += ["--images", str(photos.parent), "--json", str(result), "--device", "cpu"]
    assert run_command(evaluate_pairs, argv) == 0
    assert json.loads(result.read_text())["n_pairs"] == 2


def test_a_folder_that_is_not_a_model_is_an_error(photos, tmp_path, capsys):
    argv = ["predict", "--checkpoint", str(photos), "--input", str(photos)]
    assert run_command(predict, [*argv, "--output", str(tmp_path / "o"), "--quiet"]) == 1
    assert "config.json" in capsys.readouterr().err
