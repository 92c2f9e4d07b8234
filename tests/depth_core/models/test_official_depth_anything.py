"""The authors' Depth Anything .pth files: every variant, written in their key layout from a
random transformers model, loads back to the same outputs."""

from __future__ import annotations

import os
import re

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from depth_core.model_loading import check_model_path, load_depth_model
from depth_core.models.checkpoint import CheckpointError
from depth_core.models.official_depth_anything import (
    ENCODERS,
    Variant,
    detect_variant,
    fitted_state,
    transformers_config,
)

pytest.importorskip("transformers")

BY_NAME = {e.name: e for e in ENCODERS.values()}
FILES = {  # the released file names
    ("vits", 1, None): "depth_anything_vits14.pth",
    ("vits", 2, None): "depth_anything_v2_vits.pth",
    ("vitb", 2, None): "depth_anything_v2_vitb.pth",
    ("vits", 2, 20.0): "depth_anything_v2_metric_hypersim_vits.pth",
    ("vitb", 2, 80.0): "depth_anything_v2_metric_vkitti_vitb.pth",
    ("vitb", 1, None): "depth_anything_vitb14.pth",
}
# ViT-L (335M weights, a 1.3 GB file): the whole round trip too, among the slow tests.
LARGE_FILES = {
    ("vitl", 2, None): "depth_anything_v2_vitl.pth",
    ("vitl", 1, None): "depth_anything_vitl14.pth",
}


def _authors_name(name: str) -> str:
    """transformers' tensor name in the authors' layout (the reverse of the loader's renaming)."""
    rules = [
        (r"backbone\.embeddings\.cls_token", "pretrained.cls_token"),
        (r"backbone\.embeddings\.mask_token", "pretrained.mask_token"),
        (r"backbone\.embeddings\.position_embeddings", "pretrained.pos_embed"),
        (r"backbone\.embeddings\.patch_embeddings\.projection\.", "pretrained.patch_embed.proj."),
        (r"backbone\.layernorm\.", "pretrained.norm."),
        (r"backbone\.encoder\.layer\.(\d+)\.attention\.o_proj\.", r"pretrained.blocks.\1.attn.proj."),
        (r"backbone\.encoder\.layer\.(\d+)\.layer_scale(\d)\.lambda1", r"pretrained.blocks.\1.ls\2.gamma"),
        (r"backbone\.encoder\.layer\.(\d+)\.", r"pretrained.blocks.\1."),
        (r"neck\.reassemble_stage\.layers\.(\d)\.projection\.", r"depth_head.projects.\1."),
        (r"neck\.reassemble_stage\.layers\.(\d)\.resize\.", r"depth_head.resize_layers.\1."),
        (r"neck\.convs\.(\d)\.", lambda m: f"depth_head.scratch.layer{int(m[1]) + 1}_rn."),
        (r"neck\.fusion_stage\.layers\.(\d)\.", lambda m: f"depth_head.scratch.refinenet{4 - int(m[1])}."),
        (r"head\.conv1\.", "depth_head.scratch.output_conv1."),
        (r"head\.conv2\.", "depth_head.scratch.output_conv2.0."),
        (r"head\.conv3\.", "depth_head.scratch.output_conv2.2."),
    ]  # fmt: skip
    for pattern, replacement in rules:
        if re.match(pattern, name):
            name = re.sub(pattern, replacement, name, count=1)
            break
    for ours, theirs in (("projection.", "out_conv."), ("residual_layer", "resConfUnit"),
                         ("convolution", "conv")):  # fmt: skip
        if name.startswith("depth_head.scratch.refinenet"):
            name = name.replace(ours, theirs)
    return name


def _authors_state(model) -> dict[str, torch.Tensor]:
    state, qkv = {}, {}
    for name, tensor in model.state_dict().items():
        m = re.fullmatch(r"backbone\.encoder\.layer\.(\d+)\.attention\.([qkv])_proj\.(\w+)", name)
        if m:
            qkv.setdefault((m[1], m[3]), {})[m[2]] = tensor
        else:
            state[_authors_name(name)] = tensor.clone()
    for (block, leaf), parts in qkv.items():
        fused = torch.cat([parts["q"], parts["k"], parts["v"]])
        state[f"pretrained.blocks.{block}.attn.qkv.{leaf}"] = fused
    return state


def _random_model(variant: Variant):
    """The transformers model of `variant`, random weights (filled fast, spread so maps vary)."""
    from transformers import DepthAnythingForDepthEstimation

    with torch.device("meta"):
        model = DepthAnythingForDepthEstimation(transformers_config(variant))
    model = model.to_empty(device="cpu").eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            fan_in = param[0].numel() if param.ndim > 1 else 1
            param.copy_(torch.randn(param.shape, generator=generator) / fan_in**0.5)
        if variant.max_depth is None:
            model.head.conv3.bias.fill_(50.0)  # above the relative head's ReLU
    return model


@pytest.mark.parametrize(
    "key",
    [
        *FILES,
        *(pytest.param(key, marks=pytest.mark.slow) for key in LARGE_FILES),
    ],
    ids=[*FILES.values(), *LARGE_FILES.values()],
)
def test_authors_file_loads_to_the_same_outputs(tmp_path, key):
    encoder, version, max_depth = key
    variant = Variant(BY_NAME[encoder], version, max_depth)
    reference = _random_model(variant)
    path = tmp_path / {**FILES, **LARGE_FILES}[key]
    torch.save(_authors_state(reference), path)
    check_model_path(path, "checkpoint")
    model, described = load_depth_model(path)
    assert (described["encoder"], described["version"], described["max_depth"]) == key
    assert described["depth_type"] == ("relative" if max_depth is None else "metric")
    assert model.working_size(480, 640) == (518, 686)  # infer_image: the short side at 518
    assert model.working_size(5, 7) == (518, 728)
    x = torch.rand(1, 3, 28, 42, generator=torch.Generator().manual_seed(1))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = reference(pixel_values=(x - mean) / std).predicted_depth
        ours = model.predict_raw(x)
    assert float(expected.std()) > 0
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))


def test_a_tensor_that_does_not_fit_is_named(tmp_path):
    variant = Variant(BY_NAME["vits"], 2, None)
    state = _authors_state(_random_model(variant))
    state["depth_head.projects.1.weight"] = torch.zeros(95, 384, 1, 1)
    path = tmp_path / "depth_anything_v2_vits.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"projections \(48, 95, 192, 384\)"):
        load_depth_model(path)
    del state["depth_head.projects.1.weight"]
    torch.save({**state, "depth_head.extra.weight": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="projects.1.weight"):
        load_depth_model(path)


def test_a_file_that_is_not_depth_anything_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"pretrained.cls_token": torch.zeros(1, 1, 1536)}, path)
    with pytest.raises(CheckpointError, match="ViT-G is not supported"):
        check_model_path(path, "checkpoint")


@pytest.mark.parametrize(
    "name", ["depth_anything_vitl14.pth", "depth_anything_v2_metric_hypersim_vitl.pth"]
)
def test_vit_l_files_are_recognised_and_fit(tmp_path, name):
    """ViT-L's 335M weights take long to fill and write: its layout is checked on empty tensors."""
    from transformers import DepthAnythingForDepthEstimation

    version = 1 if "v2" not in name else 2
    variant = Variant(BY_NAME["vitl"], version, None if version == 1 else 20.0)
    with torch.device("meta"):
        model = DepthAnythingForDepthEstimation(transformers_config(variant))
    state = {k: torch.empty(v.shape) for k, v in _authors_state(model).items()}
    assert detect_variant(state, tmp_path / name) == variant
    assert variant.out_indices() == ([21, 22, 23, 24] if version == 1 else [5, 12, 18, 24])
    with torch.device("meta"):
        fresh = DepthAnythingForDepthEstimation(transformers_config(variant))
    assert len(fitted_state(state, variant, fresh, tmp_path / name)) == len(model.state_dict())
