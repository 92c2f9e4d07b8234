import pytest
import torch
from pydantic import ValidationError

from depth_core.models.config import ModelConfig
from depth_core.models.depth_model import DepthModel, build_model


def _model(config, seed=0):
    torch.manual_seed(seed)
    return build_model(config)


def test_any_input_size_gives_nonnegative_disparity_at_that_size(tiny_config):
    model = _model(tiny_config)
    assert isinstance(model.config, ModelConfig)
    for height, width in [(100, 72), (33, 47)]:
        out = model(torch.rand(1, 3, height, width))
        assert out.shape == (1, height, width)
        assert out.dtype == torch.float32
        assert torch.isfinite(out).all()
        assert out.min() >= 0


def test_fresh_model_is_positive_varied_and_depends_on_the_image(tiny_config):
    model = _model(tiny_config)
    torch.manual_seed(1)
    images = torch.rand(2, 3, 64, 48)
    out = model(images)
    assert out.min() > 0, "final ReLU must not start dead"
    assert out.std() > 1e-4
    assert not torch.allclose(out[0], out[1])


def test_one_optimizer_step_reduces_a_loss_and_every_parameter_gets_gradient(tiny_config):
    model = _model(tiny_config)
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    target = torch.linspace(0.0, 2.0, 32).view(1, 32, 1).expand(2, 32, 32)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    loss = ((model(images) - target) ** 2).mean()
    loss.backward()
    without_grad = [
        n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0
    ]
    assert without_grad == []
    optimizer.step()
    with torch.no_grad():
        assert ((model(images) - target) ** 2).mean() < loss.item()


def test_channels_last_and_bf16_autocast_agree_with_fp32(tiny_convnext):
    model = _model(tiny_convnext).eval()
    images = torch.rand(2, 3, 40, 56, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        reference = model(images)
        model_cl = model.to(memory_format=torch.channels_last)
        channels_last = model_cl(images.contiguous(memory_format=torch.channels_last))
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            low_precision = model(images)
    torch.testing.assert_close(channels_last, reference, rtol=1e-4, atol=1e-5)
    assert low_precision.dtype == torch.float32 and low_precision.shape == reference.shape
    assert (low_precision - reference).abs().max() < 0.05 * reference.abs().max()


def test_vit_under_bf16_autocast_trains(tiny_vit):
    model = _model(tiny_vit)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = model(torch.rand(1, 3, 32, 48))
    assert out.dtype == torch.float32 and out.min() >= 0
    out.mean().backward()
    assert model.backbone.model.patch_embed.proj.weight.grad.abs().sum() > 0


def test_build_model_accepts_a_dict_and_validates_it(tiny_vit):
    model = build_model(tiny_vit)
    assert isinstance(model, DepthModel) and model.config.backbone == "vit_tiny_patch16_224"
    with pytest.raises(ValidationError, match="featurez"):
        build_model(dict(tiny_vit, featurez=3))


def test_bad_image_shapes_are_rejected(tiny_vit):
    model = _model(tiny_vit)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match="shape"):
        model(torch.rand(1, 1, 32, 32))


def test_normalisation_constants_are_not_saved_as_weights(tiny_vit):
    state = _model(tiny_vit).state_dict()
    assert "mean" not in state and "std" not in state
