"""One checkpoint, the same images: predict, evaluate, evaluate-pairs, the pseudo-labels and the
agreement stage predict the same disparities (and score the same DA-2K accuracy)."""

from __future__ import annotations

import argparse
import inspect
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from depth_core import metrics
from depth_core.data.manifest import finalize_dataset
from depth_core.data.shards import read_shard, shard_path, write_shard
from depth_core.inference import DEFAULT_AMP, iterate_predictions
from depth_core.models import ModelConfig, build_model, save_checkpoint
from depth_core.pseudo_label import generate_pseudo_labels, to_float16_labels
from depth_core.voting import agreement
from depth_core.voting.da2k import evaluate_pairs, write_annotations
from orchestration.commands import evaluate, predict
from orchestration.commands import evaluate_pairs as evaluate_pairs_command
from orchestration.lineage.paths import TARGET_EVAL, default_paths
from orchestration.stages.agreement import stage_agreement
from orchestration.stages.base import StageContext
from tests.helpers import TINY_VIT, run_command, smoke_params

SIZE = (24, 40)  # not the model's input: every path resizes in and out
IDS = ["a", "b", "c"]
SCENE = "indoor"  # DA-2K keeps each scene type in its own folder
CPU = ["--device", "cpu"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(ModelConfig(**TINY_VIT))
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.safetensors", model)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """The same three RGB-D scenes as a dataset, a folder of pictures and an RGB-D folder."""
    root = tmp_path_factory.mktemp("scenes")
    rng = np.random.default_rng(0)
    rows = np.linspace(1.0, 3.0, SIZE[0], dtype=np.float32)[:, None]
    smooth = np.kron(rng.integers(0, 255, (3, 6, 10, 3)), np.ones((1, 4, 4, 1)))
    images = smooth.astype(np.uint8)
    depth = np.stack([np.broadcast_to(10.0 / (rows + i), SIZE) for i in range(3)]).copy()
    dataset = root / "dataset"
    write_shard(
        shard_path(dataset, 0),
        {
            "id": np.array(IDS),
            "image": images,
            "depth": depth,
            "mask": np.ones_like(depth, dtype=bool),
        },
    )
    finalize_dataset(dataset)
    pictures, rgbd = root / "pictures", root / "rgbd"
    (pictures / SCENE).mkdir(parents=True)
    rgbd.mkdir()
    for name, image, d in zip(IDS, images, depth):
        Image.fromarray(image).save(pictures / SCENE / f"{name}.png")
        Image.fromarray(image).save(rgbd / f"{name}.png")
        Image.fromarray(np.round(d * 1000).astype(np.uint16)).save(rgbd / f"{name}_depth.png")
    return {"dataset": dataset, "pictures": pictures, "rgbd": rgbd, "images": images}


@pytest.fixture(scope="module")
def predicted(checkpoint, scenes, tmp_path_factory):
    """`depth-distill predict` with its defaults: disparity per image id."""
    out = tmp_path_factory.mktemp("predict")
    argv = ["predict", "--checkpoint", str(checkpoint), "--input", str(scenes["pictures"])]
    assert run_command(predict, [*argv, "--output", str(out), *CPU, "--quiet"]) == 0
    return {name: np.load(out / SCENE / f"{name}.npy") for name in IDS}


def _capture_scored(monkeypatch) -> list[np.ndarray]:
    """The predictions `evaluate` hands to the metrics, one array per image."""
    scored: list[np.ndarray] = []
    real = metrics.evaluate_disparity

    def spy(pred, *args, **kwargs):
        scored.extend(np.asarray(p, dtype=np.float32) for p in pred)
        return real(pred, *args, **kwargs)

    monkeypatch.setattr(metrics, "evaluate_disparity", spy)
    return scored


def _assert_same(maps, predicted, where):
    assert len(maps) == len(IDS), where
    for name, got in zip(IDS, maps):
        assert np.array_equal(got, predicted[name]), f"{where}: image {name} differs from predict"


def test_every_command_defaults_to_one_precision():
    for module, argv in (
        (predict, ["predict", "--checkpoint", "c", "--input", "i", "--output", "o"]),
        (evaluate, ["evaluate", "--checkpoint", "c", "--data", "d"]),
        (
            evaluate_pairs_command,
            ["evaluate-pairs", "--checkpoint", "c", "--annotations", "a", "--images", "i"],
        ),
    ):
        parser = argparse.ArgumentParser()
        module.register(parser.add_subparsers(dest="command"))
        args = parser.parse_args(argv)
        assert args.amp == DEFAULT_AMP, argv[0]
    for function in (generate_pseudo_labels, iterate_predictions):
        assert inspect.signature(function).parameters["amp"].default == DEFAULT_AMP


def test_evaluate_scores_what_predict_predicts(checkpoint, scenes, predicted, monkeypatch):
    scored = _capture_scored(monkeypatch)
    argv = ["evaluate", "--checkpoint", str(checkpoint), *CPU, "--quiet"]
    assert run_command(evaluate, [*argv, "--data", str(scenes["dataset"])]) == 0
    _assert_same(scored[: len(IDS)], predicted, "evaluate (dataset)")
    scored.clear()
    folder = ["--data", str(scenes["rgbd"]), "--depth-scale", "1000"]
    assert run_command(evaluate, [*argv, *folder]) == 0
    _assert_same(scored[: len(IDS)], predicted, "evaluate (RGB-D folder)")


def test_evaluate_pairs_scores_like_predict_outputs(checkpoint, scenes, predicted, tmp_path):
    rng = np.random.default_rng(1)
    annotations = {}
    for name in IDS:
        entries = []
        for _ in range(40):
            p1, p2 = (
                [int(rng.integers(0, SIZE[0])), int(rng.integers(0, SIZE[1]))] for _ in range(2)
            )
            entries.append({"point1": p1, "point2": p2, "closer_point": "point1"})
        annotations[f"{SCENE}/{name}.png"] = entries
    file = write_annotations(tmp_path / "annotations.json", annotations)
    out = tmp_path / "pairs.json"
    argv = ["evaluate-pairs", "--checkpoint", str(checkpoint), "--annotations", str(file)]
    argv += ["--images", str(scenes["pictures"]), "--json", str(out), *CPU]
    assert run_command(evaluate_pairs_command, argv) == 0
    command = json.loads(out.read_text())
    from_npy = evaluate_pairs({f"{SCENE}/{k}.png": v for k, v in predicted.items()}, file)
    assert command["n_pairs"] == from_npy["n_pairs"] == 120
    assert command["n_correct"] == from_npy["n_correct"]
    assert command["accuracy"] == from_npy["accuracy"]


def test_pseudo_labels_are_predict_outputs(checkpoint, scenes, predicted, tmp_path):
    out = tmp_path / "pseudo"
    generate_pseudo_labels(checkpoint, scenes["dataset"], out, device="cpu", progress=False)
    stored = read_shard(shard_path(out, 0), ["id", "disparity"])
    assert list(stored["id"]) == IDS
    expected = to_float16_labels(np.stack([predicted[name] for name in IDS]))
    assert np.array_equal(stored["disparity"], expected)


def test_agreement_experts_predict_what_predict_predicts(
    checkpoint, scenes, predicted, tmp_path, monkeypatch
):
    monkeypatch.setenv("DEPTH_DISTILL_TRACKING", "off")
    shutil.copytree(scenes["dataset"], tmp_path / TARGET_EVAL)
    params = smoke_params()
    vote = params.agreement.model_copy(update={"experts": [str(checkpoint)], "n_images": 3})
    params = params.model_copy(update={"device": "cpu", "agreement": vote})
    seen = {}

    def run_agreement(predictions, *args, **kwargs):
        seen.update(predictions)
        return {}

    monkeypatch.setattr(agreement, "run_agreement", run_agreement)
    stage_agreement(StageContext(params=params, paths=default_paths(tmp_path)))
    _assert_same(seen[checkpoint.stem], predicted, "agreement stage")
