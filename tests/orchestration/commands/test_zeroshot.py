from __future__ import annotations

import argparse
import json
import types

import pytest

from depth_core import inference
from depth_core.models import ModelConfig, build_model, save_checkpoint
from orchestration import cli
from orchestration.commands import zeroshot as command
from tests import zeroshot_fixtures


def _parser():
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers(dest="command", required=True))
    return parser


def _run(argv):
    args = _parser().parse_args(["zeroshot", *argv])
    return args.func(args)


@pytest.fixture
def roots(tmp_path):
    return {
        "scannet": zeroshot_fixtures.write_scannet(tmp_path / "scannet"),
        "da2k": zeroshot_fixtures.write_da2k(tmp_path / "da2k"),
    }


@pytest.fixture
def exact_model(monkeypatch, tmp_path):
    """load_for_inference replaced by a model predicting an affine map of the true disparity."""
    loaded = []

    def load_for_inference(path, device="auto", amp="fp32"):
        loaded.append((str(path), device, amp))
        return types.SimpleNamespace(
            predict=lambda images, batch_size=8, flip_tta=False, scales=(1.0,): (
                zeroshot_fixtures.exact_predict(images)
            )
        )

    monkeypatch.setattr(inference, "load_for_inference", load_for_inference)
    checkpoint = tmp_path / "exact.safetensors"
    checkpoint.write_bytes(b"stand-in")
    return checkpoint, loaded


def test_command_is_listed_in_the_cli():
    assert cli.COMMAND_MODULES["zeroshot"] == "zeroshot"


def test_table_json_and_skips(roots, exact_model, tmp_path, capsys):
    checkpoint, loaded = exact_model
    out = tmp_path / "out" / "bench.json"
    code = _run(
        [
            "--checkpoint",
            str(checkpoint),
            "--suite",
            "scannet",
            "da2k",
            "nyu",
            "--root",
            f"scannet={roots['scannet']}",
            "--root",
            f"da2k={roots['da2k']}",
            "--json",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0 and len(loaded) == 1
    captured = capsys.readouterr()
    assert "skipping nyu: no root given" in captured.err
    assert "skipped 2 (corrupt 1, missing 1)" in captured.out
    assert "| Depth Anything V2-S (published) |" in captured.out
    result = json.loads(out.read_text())
    scannet = result[str(checkpoint)]["scannet"]
    assert scannet["abs_rel"] == pytest.approx(0.0, abs=1e-5) and scannet["delta1"] == 1.0
    assert scannet["n_images"] == 3 and scannet["n_skipped"] == 2
    assert result[str(checkpoint)]["da2k"]["pair_accuracy"] == 1.0
    assert set(result[str(checkpoint)]) == {"scannet", "da2k"}


def test_a_bare_root_is_only_for_one_suite(roots, exact_model, capsys):
    checkpoint, _ = exact_model
    assert (
        _run(
            [
                "--checkpoint",
                str(checkpoint),
                "--suite",
                "scannet",
                "--root",
                str(roots["scannet"]),
                "--quiet",
            ]
        )
        == 0
    )
    assert (
        _run(
            [
                "--checkpoint",
                str(checkpoint),
                "--suite",
                "scannet",
                "da2k",
                "--root",
                str(roots["scannet"]),
            ]
        )
        == 2
    )
    assert "NAME=PATH" in capsys.readouterr().err


def test_nothing_runnable_and_missing_checkpoint_fail_with_a_message(
    roots, exact_model, tmp_path, capsys
):
    checkpoint, _ = exact_model
    assert (
        _run(
            [
                "--checkpoint",
                str(checkpoint),
                "--suite",
                "kitti",
                "--root",
                f"kitti={tmp_path / 'absent'}",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "skipping kitti" in err and "absent" in err and "no benchmark could run" in err
    assert (
        _run(
            [
                "--checkpoint",
                str(tmp_path / "nope.safetensors"),
                "--suite",
                "scannet",
                "--root",
                str(roots["scannet"]),
            ]
        )
        == 2
    )
    assert "nope.safetensors" in capsys.readouterr().err


def test_a_split_file_overrides_the_default_list(roots, exact_model, tmp_path, capsys):
    checkpoint, _ = exact_model
    split = tmp_path / "two.txt"
    split.write_text(
        "scene0000_00/color/000000.png scene0000_00/depth/000000.png\n"
        "scene0000_00/color/000001.png scene0000_00/depth/000001.png\n"
    )
    out = tmp_path / "r.json"
    assert (
        _run(
            [
                "--checkpoint",
                str(checkpoint),
                "--suite",
                "scannet",
                "--root",
                str(roots["scannet"]),
                "--split",
                f"scannet={split}",
                "--json",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    assert json.loads(out.read_text())[str(checkpoint)]["scannet"]["n_images"] == 2


def test_with_a_real_tiny_checkpoint(roots, tmp_path):
    config = ModelConfig(
        backbone="vit_tiny_patch16_224",
        features=8,
        img_size=32,
        patch_size=8,
        backbone_kwargs={"depth": 4, "embed_dim": 32, "num_heads": 2},
    )
    path = save_checkpoint(tmp_path / "tiny.safetensors", build_model(config))
    out = tmp_path / "r.json"
    assert (
        _run(
            [
                "--checkpoint",
                str(path),
                "--device",
                "cpu",
                "--suite",
                "scannet",
                "da2k",
                "--root",
                f"scannet={roots['scannet']}",
                "--root",
                f"da2k={roots['da2k']}",
                "--json",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())[str(path)]
    assert result["scannet"]["n_images"] == 3 and 0.0 <= result["scannet"]["delta1"] <= 1.0
    assert result["da2k"]["n_pairs"] == 2
