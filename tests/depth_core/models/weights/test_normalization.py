"""Inputs are normalised as the weights were trained, and checkpoints remember how."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from depth_core.models import ModelConfig, build_model, load_checkpoint, save_checkpoint
from depth_core.models.checkpoint import CONFIG_KEY, read_checkpoint_config
from depth_core.models.weights import IMAGENET_MEAN, IMAGENET_STD, input_normalization

TINY_LITE = {"backbone": "tf_efficientnet_lite0", "features": 8, "img_size": 64}


@pytest.mark.parametrize(
    "backbone, pretrained, mean",
    [
        ("tf_efficientnet_lite0", "package:efficientnet_lite0", (0.5, 0.5, 0.5)),
        ("tf_efficientnet_lite0", None, (0.5, 0.5, 0.5)),  # timm's pretrained config
        ("convnext_atto", None, IMAGENET_MEAN),
        ("vit_small_patch14_dinov2", "/weights/dinov2.safetensors", IMAGENET_MEAN),
    ],
)
def test_normalisation_follows_the_weights(backbone, pretrained, mean):
    assert input_normalization(backbone, pretrained)[0] == mean


def test_explicit_statistics_win_and_are_applied():
    config = ModelConfig(**TINY_LITE, input_mean=(0.1, 0.2, 0.3), input_std=(1.0, 2.0, 3.0))
    model = build_model(config)
    assert model.config.input_mean == (0.1, 0.2, 0.3)
    assert torch.allclose(model.std.flatten(), torch.tensor([1.0, 2.0, 3.0]))


def test_non_positive_std_is_refused():
    with pytest.raises(ValueError, match="input_std"):
        ModelConfig(**TINY_LITE, input_std=(0.5, 0.0, 0.5))


def test_a_checkpoint_alone_predicts_with_its_normalisation(tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelConfig(**TINY_LITE)).eval()
    path = save_checkpoint(tmp_path / "m.safetensors", model)
    assert read_checkpoint_config(path).input_mean == (0.5, 0.5, 0.5)
    loaded, _ = load_checkpoint(path)
    image = torch.rand(1, 3, 64, 80)
    with torch.no_grad():
        assert torch.allclose(loaded(image), model(image), atol=1e-6)


def test_checkpoints_from_before_the_fields_keep_imagenet_statistics(tmp_path):
    """Old checkpoints were trained with ImageNet statistics whatever the backbone."""
    model = build_model(ModelConfig(**TINY_LITE))
    path = save_checkpoint(tmp_path / "new.safetensors", model)
    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata()
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118 - not a dict
    stored = json.loads(header[CONFIG_KEY])
    del stored["input_mean"], stored["input_std"]
    header[CONFIG_KEY] = json.dumps(stored)
    old = tmp_path / "old.safetensors"
    save_file(tensors, str(old), metadata=header)
    loaded, _ = load_checkpoint(old)
    assert loaded.config.input_mean == IMAGENET_MEAN
    assert loaded.config.input_std == IMAGENET_STD
