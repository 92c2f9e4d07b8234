import pytest
import timm
import torch
from safetensors.torch import save_file

from depth_core.models.backbones import (
    HierarchicalBackbone,
    ViTBackbone,
    build_backbone,
    default_layer_indices,
)
from depth_core.models.config import ModelConfig

SMALL_VIT = {"depth": 8, "embed_dim": 48, "num_heads": 2}  # vit_tiny's structure, fewer weights


def test_default_layer_indices_are_evenly_spaced_and_end_last():
    assert default_layer_indices(12) == (2, 5, 8, 11)
    assert default_layer_indices(24) == (5, 11, 17, 23)
    assert default_layer_indices(4) == (0, 1, 2, 3)
    with pytest.raises(ValueError, match="at least 4 blocks"):
        default_layer_indices(3)


@pytest.mark.parametrize(
    "name, family",
    [
        ("vit_tiny_patch16_224", ViTBackbone),
        ("deit_tiny_distilled_patch16_224", ViTBackbone),
        ("convnext_atto", HierarchicalBackbone),
        ("resnet18", HierarchicalBackbone),
        ("efficientnet_b0", HierarchicalBackbone),
    ],
)
def test_family_is_read_from_the_model_structure(name, family):
    assert type(build_backbone(ModelConfig(backbone=name))) is family


def test_unknown_backbone_is_named():
    with pytest.raises(ValueError, match="no_such_net"):
        build_backbone(ModelConfig(backbone="no_such_net"))


@pytest.mark.parametrize("patch_size, grid", [(None, (4, 3)), (8, (8, 6))])
def test_vit_returns_four_token_maps_on_the_patch_grid(patch_size, grid):
    config = ModelConfig(
        backbone="vit_tiny_patch16_224",
        img_size=64,
        patch_size=patch_size,
        backbone_kwargs=SMALL_VIT,
    )
    backbone = build_backbone(config)
    assert isinstance(backbone, ViTBackbone)
    patch = patch_size or 16
    assert backbone.input_multiple == (patch, patch)
    assert backbone.layer_indices == (1, 3, 5, 7)
    maps = backbone(torch.randn(2, 3, 64, 48))  # not the square training size: dynamic grid
    assert [tuple(m.shape) for m in maps] == [(2, 48, *grid)] * 4
    assert not torch.allclose(maps[0], maps[3])


def test_vit_custom_layer_indices_prune_later_blocks():
    config = ModelConfig(
        backbone="vit_tiny_patch16_224",
        img_size=32,
        layer_indices=(0, 1, 2, 3),
        backbone_kwargs=SMALL_VIT,
    )
    backbone = build_backbone(config)
    assert len(backbone.model.blocks) == 4
    bad = config.model_copy(update={"layer_indices": (3, 5, 7, 8)})
    with pytest.raises(ValueError, match="layer_indices"):
        build_backbone(bad)


def test_conv_backbone_returns_last_four_stages():
    backbone = build_backbone(ModelConfig(backbone="resnet18", img_size=64))
    assert isinstance(backbone, HierarchicalBackbone)
    assert backbone.reductions == (4, 8, 16, 32)
    assert backbone.channels == (64, 128, 256, 512)
    maps = backbone(torch.randn(1, 3, 64, 96))
    assert [tuple(m.shape[1:]) for m in maps] == [
        (64, 16, 24),
        (128, 8, 12),
        (256, 4, 6),
        (512, 2, 3),
    ]


def test_patch_size_is_rejected_for_conv_backbones():
    with pytest.raises(ValueError, match="patch_size"):
        build_backbone(ModelConfig(backbone="resnet18", patch_size=8))


def _save_weights(model: torch.nn.Module, path) -> str:
    """``model``'s state dict as a weights file a user would hold (.safetensors or .pth)."""
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if str(path).endswith(".safetensors"):
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return str(path)


def test_missing_pretrained_file_is_named(tmp_path):
    missing = tmp_path / "absent.safetensors"
    with pytest.raises(ValueError, match=r"absent.safetensors \(model.pretrained\)"):
        build_backbone(ModelConfig(backbone="resnet18", pretrained=str(missing)))


def test_vit_pretrained_safetensors_weights_are_loaded(tmp_path):
    torch.manual_seed(1)
    source = timm.create_model("vit_tiny_patch16_224", img_size=64, **SMALL_VIT)
    backbone = build_backbone(
        ModelConfig(
            backbone="vit_tiny_patch16_224",
            img_size=64,
            pretrained=_save_weights(source, tmp_path / "vit.safetensors"),
            backbone_kwargs=SMALL_VIT,
        )
    )
    loaded = backbone.model.state_dict()
    for key in ("patch_embed.proj.weight", "pos_embed", "blocks.7.mlp.fc2.weight", "norm.weight"):
        assert torch.equal(loaded[key], source.state_dict()[key]), key


def test_vit_pretrained_at_another_resolution_resamples_position_embedding(tmp_path):
    source = timm.create_model("vit_tiny_patch16_224", **SMALL_VIT)  # 14x14 grid, as published
    backbone = build_backbone(
        ModelConfig(
            backbone="vit_tiny_patch16_224",
            img_size=64,
            pretrained=_save_weights(source, tmp_path / "vit224.pth"),
            backbone_kwargs=SMALL_VIT,
        )
    )
    assert backbone.model.pos_embed.shape == (1, 1 + 4 * 4, 48)
    assert torch.equal(backbone.model.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_dinov2_weights_from_a_local_timm_file_are_loaded(tmp_path, suffix):
    """The path for users who hold DINOv2 (e.g. timm's vit_small_patch14_dinov2.lvd142m file):
    the published 518-px position grid is resampled to the training size."""
    torch.manual_seed(3)
    shrink = {"depth": 4, "embed_dim": 48, "num_heads": 2}
    source = timm.create_model("vit_small_patch14_dinov2", **shrink)  # 37 x 37 grid, as published
    backbone = build_backbone(
        ModelConfig(
            backbone="vit_small_patch14_dinov2",
            img_size=56,
            pretrained=_save_weights(source, tmp_path / f"dinov2{suffix}"),
            backbone_kwargs=shrink,
        )
    )
    assert backbone.input_multiple == (14, 14)
    assert backbone.model.pos_embed.shape == (1, 1 + 4 * 4, 48)
    assert torch.equal(backbone.model.blocks[3].mlp.fc1.weight, source.blocks[3].mlp.fc1.weight)
    assert torch.equal(backbone.model.blocks[0].ls1.gamma, source.blocks[0].ls1.gamma)
    maps = backbone(torch.randn(1, 3, 56, 70))
    assert [tuple(m.shape) for m in maps] == [(1, 48, 4, 5)] * 4


def test_conv_pretrained_pth_weights_are_loaded(tmp_path):
    torch.manual_seed(2)
    source = timm.create_model("resnet18")
    path = _save_weights(source, tmp_path / "resnet18.pth")
    backbone = build_backbone(ModelConfig(backbone="resnet18", pretrained=path))
    loaded = backbone.model.state_dict()
    assert torch.equal(loaded["conv1.weight"], source.conv1.weight)
    assert torch.equal(loaded["layer4.1.conv2.weight"], source.layer4[1].conv2.weight)


def test_pretrained_weights_of_another_architecture_are_rejected(tmp_path):
    path = _save_weights(timm.create_model("resnet18"), tmp_path / "resnet18.safetensors")
    with pytest.raises(ValueError, match="resnet18.safetensors"):
        build_backbone(ModelConfig(backbone="convnext_atto", pretrained=path))


@pytest.mark.parametrize("name", ["corrupt.safetensors", "corrupt.pth"])
def test_corrupt_pretrained_file_is_named(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"not weights at all")
    with pytest.raises(ValueError, match=name):
        build_backbone(ModelConfig(backbone="resnet18", pretrained=str(path)))
