"""load_depth_model: one loader for checkpoints and Hugging Face folders, with named errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from safetensors.torch import save_file

from depth_core.model_loading import check_model_path, load_depth_model
from depth_core.models import (
    CheckpointError,
    DepthModel,
    ModelConfig,
    build_model,
    load_checkpoint,
    save_checkpoint,
)
from depth_core.models.checkpoint import CHECKPOINT_FILE
from depth_core.models.transformers_teacher import TransformersDepthModel
from tests.helpers import TINY_VIT, save_tiny_depth_anything, save_tiny_dinov2

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(ModelConfig(**TINY_VIT))
    path = tmp_path_factory.mktemp("ckpt") / CHECKPOINT_FILE
    return save_checkpoint(path, model, metadata={"note": "tiny"})


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    pytest.importorskip("transformers")
    return save_tiny_depth_anything(tmp_path_factory.mktemp("hf") / "depth-anything-tiny")


def test_a_checkpoint_loads_as_load_checkpoint_does(checkpoint):
    model, metadata = load_depth_model(checkpoint)
    reference, expected = load_checkpoint(checkpoint)
    assert isinstance(model, DepthModel) and metadata == expected == {"note": "tiny"}
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))


def test_a_hugging_face_folder_loads_as_a_wrapped_model(hf_folder):
    model, metadata = load_depth_model(hf_folder, map_location="cpu")
    assert isinstance(model, TransformersDepthModel)
    assert metadata["folder"] == str(hf_folder) and metadata["source"] == "transformers"


def test_loading_a_checkpoint_does_not_import_transformers(checkpoint):
    code = (
        "import sys\n"
        "from depth_core.model_loading import load_depth_model\n"
        f"load_depth_model({str(checkpoint)!r})\n"
        "assert 'transformers' not in sys.modules, 'transformers imported for a checkpoint'\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_missing_path_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="nothing-here"):
        load_depth_model(tmp_path / "nothing-here")


def test_folder_without_config_json_is_named(tmp_path):
    folder = tmp_path / "just-weights"
    folder.mkdir()
    save_file({"w": torch.zeros(1)}, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"just-weights.*config\.json"):
        load_depth_model(folder)


def test_a_model_folder_that_is_not_a_depth_model_is_refused(tmp_path):
    pytest.importorskip("transformers")
    folder = save_tiny_dinov2(tmp_path / "dinov2-encoder")
    with pytest.raises(CheckpointError, match=r"dinov2-encoder.*model_type 'dinov2'"):
        load_depth_model(folder)
    config = {"model_type": "dpt", "architectures": ["DPTForSemanticSegmentation"]}
    (tmp_path / "segmenter").mkdir()
    (tmp_path / "segmenter" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="not a depth-estimation model"):
        load_depth_model(tmp_path / "segmenter")


def test_a_folder_without_its_weights_is_refused(tmp_path, hf_folder):
    folder = tmp_path / "config-only"
    folder.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        (folder / name).write_bytes((hf_folder / name).read_bytes())
    with pytest.raises(CheckpointError, match="config-only"):
        load_depth_model(folder)


def test_check_model_path_wants_the_right_kind(tmp_path, checkpoint, hf_folder):
    assert check_model_path(checkpoint, "checkpoint") == checkpoint
    assert check_model_path(hf_folder, "transformers") == hf_folder
    with pytest.raises(CheckpointError, match="folder"):
        check_model_path(hf_folder, "checkpoint")
    with pytest.raises(CheckpointError, match="not a folder"):
        check_model_path(checkpoint, "transformers")
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(1)}, str(foreign))
    with pytest.raises(CheckpointError, match="foreign"):
        check_model_path(foreign, "checkpoint")
