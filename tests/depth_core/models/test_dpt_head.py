import pytest
import torch

from depth_core.models.dpt_head import OUTPUT_BIAS, DPTHead


def _vit_maps(batch=2, grid=(3, 5), width=24):
    return [torch.randn(batch, width, *grid) for _ in range(4)]


def test_single_scale_maps_become_a_pyramid_and_full_resolution_output():
    torch.manual_seed(0)
    head = DPTHead(
        in_channels=(24,) * 4, features=16, out_channels=(8, 12, 16, 24), single_scale=True
    )
    pyramid = head.reassemble(_vit_maps())
    assert [tuple(level.shape[-2:]) for level in pyramid] == [(12, 20), (6, 10), (3, 5), (2, 3)]
    out = head(_vit_maps(), size=(48, 80))
    assert out.shape == (2, 1, 48, 80)


def test_multi_scale_maps_keep_their_sizes():
    head = DPTHead(
        in_channels=(4, 8, 16, 32), features=8, out_channels=(8, 8, 8, 8), single_scale=False
    )
    maps = [torch.randn(1, c, 16 // 2**i, 24 // 2**i) for i, c in enumerate((4, 8, 16, 32))]
    assert [level.shape[-2:] for level in head.reassemble(maps)] == [m.shape[-2:] for m in maps]
    assert head(maps, size=(64, 96)).shape == (1, 1, 64, 96)


def test_fresh_head_is_strictly_positive_varied_and_trainable():
    """A dead final ReLU (all zeros) would make lstsq alignment singular and stop learning."""
    torch.manual_seed(0)
    head = DPTHead(
        in_channels=(24,) * 4, features=16, out_channels=(8, 12, 16, 24), single_scale=True
    )
    assert torch.all(head.output_conv2[2].bias == OUTPUT_BIAS)
    maps = [m.requires_grad_() for m in _vit_maps()]
    out = head(maps, size=(48, 80))
    assert out.min() > 0
    assert out.std() > 1e-4
    ((out - out.mean()) ** 2).mean().backward()  # a scale-sensitive loss
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    assert all(m.grad.abs().sum() > 0 for m in maps)


def test_wrong_number_of_levels_is_rejected():
    with pytest.raises(ValueError, match="4 input"):
        DPTHead(in_channels=(8, 8, 8), features=8, out_channels=(8, 8, 8, 8), single_scale=False)


def test_softplus_head_keeps_a_gradient_where_a_relu_head_is_dead():
    """Far pixels pushed below zero: a ReLU outputs 0 with no gradient, softplus recovers."""
    maps = _vit_maps()
    grads = {}
    for activation in ("relu", "softplus"):
        torch.manual_seed(0)
        head = DPTHead(
            in_channels=(24,) * 4,
            features=16,
            out_channels=(8, 12, 16, 24),
            single_scale=True,
            output_activation=activation,
        )
        with torch.no_grad():
            head.output_conv2[2].bias.fill_(-50.0)  # every pixel far below zero
        out = head(maps, size=(48, 80))
        ((out - 1.0) ** 2).mean().backward()
        grads[activation] = head.output_conv2[2].bias.grad.abs().item()
        assert out.min() >= 0
    assert grads["relu"] == 0.0
    assert grads["softplus"] > 0.0


def test_unknown_output_activation_is_named():
    with pytest.raises(ValueError, match="output_activation"):
        DPTHead(
            in_channels=(8,) * 4,
            features=8,
            out_channels=(8, 8, 8, 8),
            single_scale=False,
            output_activation="tanh",
        )
