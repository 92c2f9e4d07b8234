"""Bad settings fail before any output is cleared or any MLflow run opened, naming the key."""

from __future__ import annotations

import re

import pytest
import torch

from depth_core.models import ModelConfig
from orchestration.lineage.paths import default_paths
from orchestration.params.schema import ParamsError, parse_params
from orchestration.stages import training
from orchestration.stages.base import StageContext
from orchestration.stages.teacher import stage_teacher
from tests.helpers import TINY_VIT, smoke_params, smoke_raw


def _raw_with(path: str, value):
    raw = smoke_raw()
    node = raw
    *parents, last = path.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    return raw


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("teacher.model.backbone", "efficientnet_lite9"),
        ("device", "gpu"),
        ("teacher.device", "cuda:one"),
    ],
)
def test_bad_backbone_and_device_names_fail_at_params_naming_the_key(key, value):
    with pytest.raises(ParamsError, match=re.escape(f"{key}:")) as error:
        parse_params(_raw_with(key, value))
    assert "ModelConfig" not in str(error.value)


@pytest.fixture
def trained_teacher_dir(tmp_path, monkeypatch):
    """A finished teacher output, and a stage_run that fails the test if a run is opened."""
    out = tmp_path / "models" / "teacher"
    out.mkdir(parents=True)
    (out / "model.safetensors").write_bytes(b"trained weights")

    def no_run(*args, **kwargs):
        raise AssertionError("an MLflow run was opened before the settings were checked")

    monkeypatch.setattr(training, "stage_run", no_run)
    return out


def _teacher_context(tmp_path, **teacher_updates) -> StageContext:
    params = smoke_params()
    teacher = params.teacher.model_copy(update=teacher_updates)
    return StageContext(params.model_copy(update={"teacher": teacher}), default_paths(tmp_path))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_an_unavailable_device_keeps_the_trained_teacher(trained_teacher_dir, tmp_path):
    with pytest.raises(ValueError, match=r"^teacher\.device: .*CUDA is not available"):
        stage_teacher(_teacher_context(tmp_path, device="cuda"))
    assert (trained_teacher_dir / "model.safetensors").read_bytes() == b"trained weights"


def test_a_model_that_cannot_be_built_keeps_the_trained_teacher(trained_teacher_dir, tmp_path):
    # Valid as params, but a ViT feeding the head needs at least 4 blocks: only building says so.
    model = ModelConfig.model_validate({**TINY_VIT, "backbone_kwargs": {"depth": 2}})
    with pytest.raises(ValueError, match=r"^teacher\.model: cannot build"):
        stage_teacher(_teacher_context(tmp_path, model=model))
    assert (trained_teacher_dir / "model.safetensors").read_bytes() == b"trained weights"
