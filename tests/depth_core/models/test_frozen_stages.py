"""model.frozen_stages: the stem and the first levels of a pretrained encoder stay as loaded."""

import pytest
import timm
import torch
from pydantic import ValidationError
from safetensors.torch import save_file

from depth_core.models import build_model
from depth_core.models.config import ModelConfig


def _weights(name: str, path) -> str:
    torch.manual_seed(0)
    state = {k: v.contiguous() for k, v in timm.create_model(name).state_dict().items()}
    save_file(state, str(path))
    return str(path)


def _frozen(model) -> set[str]:
    return {n for n, p in model.backbone.model.named_parameters() if not p.requires_grad}


@pytest.mark.parametrize(
    "backbone, first_trained",
    [
        ("tf_efficientnet_lite0", "blocks.2.0.conv_pw.weight"),  # EfficientNetFeatures: dots
        ("resnet18", "layer2.0.conv1.weight"),  # FeatureListNet: act1, layer1 for two levels
    ],
)
def test_stem_and_first_levels_get_no_gradient(tmp_path, backbone, first_trained):
    path = _weights(backbone, tmp_path / f"{backbone}.safetensors")
    model = build_model(
        ModelConfig(backbone=backbone, features=8, pretrained=path, frozen_stages=2)
    )
    names = [n for n, _ in model.backbone.model.named_parameters()]
    frozen = _frozen(model)
    cut = names.index(first_trained)
    assert frozen == set(names[:cut]), "exactly the parameters before the third level"
    assert all(p.requires_grad for p in model.head.parameters())


def test_frozen_stages_keep_weights_and_statistics_through_a_training_step(tmp_path):
    path = _weights("tf_efficientnet_lite0", tmp_path / "lite0.safetensors")
    model = build_model(
        ModelConfig(backbone="tf_efficientnet_lite0", features=8, pretrained=path, frozen_stages=2)
    )
    encoder = model.backbone.model
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    model.train()
    assert not encoder.bn1.training and encoder.blocks[2].training
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(torch.rand(2, 3, 64, 64)).mean().backward()
    optimizer.step()
    after = encoder.state_dict()
    for key in ("conv_stem.weight", "bn1.running_mean", "blocks.1.0.bn1.running_var"):
        assert torch.equal(after[key], before[key]), key
    assert not torch.equal(
        after["blocks.2.0.bn1.running_mean"], before["blocks.2.0.bn1.running_mean"]
    )
    assert not torch.equal(after["blocks.6.0.conv_pw.weight"], before["blocks.6.0.conv_pw.weight"])


def test_zero_frozen_stages_trains_everything(tmp_path):
    path = _weights("resnet18", tmp_path / "resnet18.safetensors")
    model = build_model(ModelConfig(backbone="resnet18", features=8, pretrained=path))
    assert not _frozen(model)


def test_frozen_stages_without_weights_are_refused():
    with pytest.raises(ValidationError, match="frozen_stages=2 needs pretrained weights"):
        ModelConfig(backbone="resnet18", frozen_stages=2)


def test_more_stages_than_the_backbone_has_are_refused(tmp_path):
    path = _weights("resnet18", tmp_path / "resnet18.safetensors")
    with pytest.raises(ValueError, match="frozen_stages=9: this backbone has 5 feature levels"):
        build_model(ModelConfig(backbone="resnet18", pretrained=path, frozen_stages=9))


def test_plain_vit_cannot_freeze_stages(tmp_path):
    shrink = {"depth": 4, "embed_dim": 48, "num_heads": 2}
    torch.manual_seed(0)
    source = timm.create_model("vit_tiny_patch16_224", img_size=64, **shrink)
    path = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    config = ModelConfig(
        backbone="vit_tiny_patch16_224",
        img_size=64,
        backbone_kwargs=shrink,
        pretrained=str(path),
        frozen_stages=1,
    )
    with pytest.raises(ValueError, match="only hierarchical backbones"):
        build_model(config)
