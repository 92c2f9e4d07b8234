"""Strong perturbations: per-image, batched, deterministic, and CutMix losses per region."""

from __future__ import annotations

import torch

from depth_core.losses import depth_loss
from depth_core.training.config import PerturbConfig
from depth_core.training.perturb import cutmix_boxes, perturb_pseudo_batch, region_weighted_loss


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _images(n=6, h=32, w=40, seed=0):
    return torch.rand(n, 3, h, w, generator=_gen(seed))


def test_cutmix_boxes_area_and_probability():
    boxes = cutmix_boxes(
        400, 32, 32, PerturbConfig(cutmix_prob=0.5, cutmix_area=(0.1, 0.2)), _gen()
    )
    used = boxes.flatten(1).any(1)
    assert 0.4 < used.float().mean() < 0.6
    frac = boxes[used].flatten(1).float().mean(1)
    assert frac.min() >= 0.07 and frac.max() <= 0.25
    # each box is one axis-aligned rectangle: its rows and columns span a full block
    b = boxes[used][0]
    rows, cols = b.any(1).nonzero().flatten(), b.any(0).nonzero().flatten()
    assert b[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
    assert b.sum() == len(rows) * len(cols)


def test_pseudo_batch_pastes_partner_content_consistently():
    images = _images(n=4)
    target = torch.rand(4, 32, 40, generator=_gen(3))
    mask = torch.ones(4, 32, 40, dtype=torch.bool)
    config = PerturbConfig(jitter_prob=0.0, blur_prob=0.0, cutmix_prob=1.0)
    batch = perturb_pseudo_batch(images, target, mask, config, _gen())
    assert batch.pasted.flatten(1).any(1).all()
    for i in range(4):
        j = (i + 1) % 4
        inside = batch.pasted[i]
        assert torch.equal(batch.target[i][inside], target[j][inside])
        assert torch.equal(batch.image[i][:, inside], images[j][:, inside])
        assert torch.equal(batch.image[i][:, ~inside], images[i][:, ~inside])


def test_perturbation_is_deterministic_under_a_seed():
    images, target = _images(n=4), torch.rand(4, 32, 40)
    mask = torch.ones_like(target, dtype=torch.bool)
    a = perturb_pseudo_batch(images, target, mask, PerturbConfig(), _gen(7))
    b = perturb_pseudo_batch(images, target, mask, PerturbConfig(), _gen(7))
    assert torch.equal(a.image, b.image) and torch.equal(a.pasted, b.pasted)
    off = perturb_pseudo_batch(images, target, mask, PerturbConfig(enabled=False), _gen(7))
    assert torch.equal(off.image, images) and not off.pasted.any()


def _loss(pred, target, mask):
    return depth_loss(pred, target, mask, return_parts=True)


def test_region_loss_aligns_each_region_separately():
    # Target: two scenes with different affine maps of the same prediction. One joint alignment
    # cannot fit both; separate alignment fits each exactly -> zero loss.
    pred = torch.rand(2, 16, 16, generator=_gen(1)) + 0.1
    pasted = torch.zeros(2, 16, 16, dtype=torch.bool)
    pasted[:, 4:10, 3:12] = True
    target = torch.where(pasted, 5.0 * pred + 2.0, 0.5 * pred + 0.1)
    mask = torch.ones_like(pasted)
    joint, _ = _loss(pred, target, mask)
    separate, parts = region_weighted_loss(_loss, pred, target, mask, pasted)
    assert joint > 1e-2
    assert separate < 1e-6 and parts["ssi"] < 1e-6


def test_region_loss_is_area_weighted():
    pred = torch.rand(1, 16, 16, generator=_gen(2)) + 0.1
    target = torch.rand(1, 16, 16, generator=_gen(3))
    pasted = torch.zeros(1, 16, 16, dtype=torch.bool)
    pasted[:, :4] = True  # a quarter of the pixels
    mask = torch.ones_like(pasted)
    total, _ = region_weighted_loss(_loss, pred, target, mask, pasted)
    own, _ = _loss(pred, target, mask & ~pasted)
    other, _ = _loss(pred, target, mask & pasted)
    assert torch.allclose(total, 0.75 * own + 0.25 * other)
    none, _ = region_weighted_loss(_loss, pred, target, mask, torch.zeros_like(pasted))
    assert torch.allclose(none, _loss(pred, target, mask)[0])
