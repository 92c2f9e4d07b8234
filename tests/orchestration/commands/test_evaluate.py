"""`depth-distill evaluate`: a table and JSON for checkpoints and the row-prior baseline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from depth_core.data.manifest import finalize_dataset
from depth_core.data.shards import shard_path, write_shard
from depth_core.models import ModelConfig, build_model, save_checkpoint
from orchestration.commands import evaluate as command
from tests.helpers import TINY_VIT, run_command


def _main(argv: list[str]) -> int:
    return run_command(command, argv)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    paths = []
    for seed, name in ((0, "teacher"), (1, "student")):
        torch.manual_seed(seed)
        (root / name).mkdir()
        paths.append(
            save_checkpoint(root / name / "model.safetensors", build_model(ModelConfig(**TINY_VIT)))
        )
    return paths


def _ground_plane(height, width):
    """Depth shrinking towards the bottom row: the row prior is exactly right here."""
    rows = np.arange(1, height + 1, dtype=np.float32)[:, None]
    return np.broadcast_to(10.0 / rows, (height, width)).copy()


@pytest.fixture
def rgbd_folder(tmp_path):
    src = tmp_path / "rgbd"
    src.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in {"a": (30, 40), "b": (25, 50)}.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(src / f"{name}.png")
        depth_mm = np.round(_ground_plane(h, w) * 1000).astype(np.uint16)
        Image.fromarray(depth_mm).save(src / f"{name}_depth.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src / "lonely.png")
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(src / "small.png")
    Image.fromarray(np.ones((12, 12), np.uint16)).save(src / "small_depth.png")  # size mismatch
    return src


def test_folder_table_and_json(checkpoints, rgbd_folder, tmp_path, capsys):
    out = tmp_path / "eval.json"
    code = _main(
        [
            "evaluate",
            "--checkpoint",
            str(checkpoints[0]),
            "--checkpoint",
            f"s={checkpoints[1]}",
            "--data",
            str(rgbd_folder),
            "--depth-scale",
            "1000",
            "--json",
            str(out),
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert list(report["results"]) == ["teacher", "s", command.BASELINE]
    baseline = report["results"][command.BASELINE]
    assert baseline["n_images"] == 2
    assert (
        baseline["abs_rel"] < 1e-3 and baseline["pair_accuracy"] == 1.0
    )  # exact for a ground plane
    for values in report["results"].values():
        assert set(values) == {
            "abs_rel",
            "delta1",
            "pair_accuracy",
            "inverted_fraction",
            "n_images",
        }
    assert {entry["file"]: entry["code"] for entry in report["skipped"]} == {
        "lonely.png": "no_depth",
        "small.png": "size_mismatch",  # the importer's codes
    }
    table = capsys.readouterr().out
    assert "small.png: image is 10x10 but depth map small_depth.png is 12x12" in table
    assert "teacher" in table and command.BASELINE in table and "pair_accuracy" in table


def _write_dataset(folder, depth):
    """A one-shard dataset of black images with the given (N, H, W) depth, all valid."""
    n, height, width = depth.shape
    write_shard(
        shard_path(folder, 0),
        {
            "id": np.array([f"image{i}" for i in range(n)]),
            "image": np.zeros((n, height, width, 3), np.uint8),
            "depth": depth,
            "mask": np.ones_like(depth, dtype=bool),
        },
    )
    finalize_dataset(folder)


def test_dataset_directory(checkpoints, tmp_path):
    data = tmp_path / "set"
    depth = np.stack([_ground_plane(32, 32)] * 3)
    _write_dataset(data, depth)
    out = tmp_path / "e.json"
    assert (
        _main(
            [
                "evaluate",
                "--checkpoint",
                str(checkpoints[0]),
                "--data",
                str(data),
                "--json",
                str(out),
                "--device",
                "cpu",
                "--quiet",
            ]
        )
        == 0
    )
    results = json.loads(out.read_text())["results"]
    assert results["teacher"]["n_images"] == 3 and results[command.BASELINE]["pair_accuracy"] == 1.0


def test_errors_are_reported(checkpoints, rgbd_folder, tmp_path, capsys):
    assert (
        _main(
            [
                "evaluate",
                "--checkpoint",
                str(tmp_path / "x.safetensors"),
                "--data",
                str(rgbd_folder),
                "--quiet",
            ]
        )
        == 1
    )
    assert "x.safetensors" in capsys.readouterr().err
    assert (
        _main(
            [
                "evaluate",
                "--checkpoint",
                str(checkpoints[0]),
                "--checkpoint",
                str(checkpoints[0]),
                "--data",
                str(rgbd_folder),
                "--quiet",
            ]
        )
        == 1
    )
    assert "NAME=PATH" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (
        _main(["evaluate", "--checkpoint", str(checkpoints[0]), "--data", str(empty), "--quiet"])
        == 1
    )
    assert "no usable" in capsys.readouterr().err


def test_unusable_ground_truth_is_skipped_with_a_reason(checkpoints, rgbd_folder, tmp_path):
    rng = np.random.default_rng(1)
    for name in ("one_pixel", "flat"):
        Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(
            rgbd_folder / f"{name}.png"
        )
    one_pixel = np.zeros((30, 40), np.uint16)
    one_pixel[5, 5] = 3000
    Image.fromarray(one_pixel).save(rgbd_folder / "one_pixel_depth.png")
    Image.fromarray(np.full((30, 40), 2000, np.uint16)).save(rgbd_folder / "flat_depth.png")
    out = tmp_path / "eval.json"
    argv = ["evaluate", "--checkpoint", str(checkpoints[0]), "--data", str(rgbd_folder)]
    argv += ["--depth-scale", "1000", "--json", str(out), "--device", "cpu", "--quiet"]
    assert _main(argv) == 0
    report = json.loads(out.read_text())
    assert report["results"][command.BASELINE]["n_images"] == 2  # a and b only
    assert report["results"]["teacher"]["n_images"] == 2
    reasons = {e["file"]: e["reason"] for e in report["skipped"] if e["code"] == command.UNUSABLE}
    assert set(reasons) == {"one_pixel.png", "flat.png"}
    assert "1 valid depth pixels" in reasons["one_pixel.png"]
    assert "constant depth" in reasons["flat.png"]


def test_unusable_ground_truth_in_a_dataset_is_not_counted(checkpoints, tmp_path):
    data = tmp_path / "set"
    depth = np.stack([_ground_plane(32, 32)] * 3)
    depth[1] = 4.0  # constant
    _write_dataset(data, depth)
    out = tmp_path / "e.json"
    argv = ["evaluate", "--checkpoint", str(checkpoints[0]), "--data", str(data)]
    assert _main([*argv, "--json", str(out), "--device", "cpu", "--quiet"]) == 0
    report = json.loads(out.read_text())
    assert report["results"]["teacher"]["n_images"] == 2
    assert [e["file"] for e in report["skipped"]] == ["image 1"]


def test_scales_average_as_the_pseudo_label_stage_labels(checkpoints, tmp_path):
    """--flip-tta --scales score a checkpoint's predictions as the pseudo-label stage makes them."""
    from depth_core.evaluation import evaluate_model
    from depth_core.inference import load_for_inference

    data = tmp_path / "set"
    _write_dataset(data, np.stack([_ground_plane(32, 32)] * 3))

    def scored(*extra):
        out = tmp_path / f"e{len(extra)}.json"
        argv = ["evaluate", "--checkpoint", str(checkpoints[0]), "--data", str(data)]
        assert _main([*argv, "--json", str(out), "--device", "cpu", "--quiet", *extra]) == 0
        return json.loads(out.read_text())["results"]["teacher"]

    plain = scored()
    augmented = scored("--flip-tta", "--scales", "0.5", "1.0")
    model = load_for_inference(checkpoints[0], "cpu", "fp32")
    expected = evaluate_model(
        model.model, data, device="cpu", amp="fp32", flip_tta=True, scales=(0.5, 1.0)
    )
    assert augmented == pytest.approx(expected)
    assert augmented["abs_rel"] != pytest.approx(plain["abs_rel"])


@pytest.mark.parametrize("factor", ["0", "5", "x"])
def test_a_bad_scale_is_refused_naming_the_flag(checkpoints, tmp_path, factor, capsys):
    with pytest.raises(SystemExit):
        _main(
            [
                "evaluate",
                "--checkpoint",
                str(checkpoints[0]),
                "--data",
                str(tmp_path),
                "--scales",
                factor,
            ]
        )
    assert "--scales" in capsys.readouterr().err
