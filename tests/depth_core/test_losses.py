"""depth_core.losses against hand-computed values and a plain per-image float64 reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from depth_core.losses import (
    LossTerms,
    align_lstsq,
    depth_loss,
    gradient_matching_loss,
    masked_median,
    normalize_median,
    ssi_loss,
)

# ----------------------------------------------------------------------------------------------
# the reference: one image at a time, numpy float64, written as plainly as the spec reads


def ref_align(p, t):
    """(s, t) over the given valid values, with the spec's singular fallback."""
    if p.size < 2 or np.ptp(p) == 0:
        return 0.0, (float(t.mean()) if t.size else 0.0)
    design = np.stack([p, np.ones_like(p)], axis=1)
    (s, shift), *_ = np.linalg.lstsq(design, t, rcond=None)
    return float(s), float(shift)


def ref_normalize(x, mask):
    out = np.zeros_like(x)
    if mask.any():
        v = x[mask]
        med = np.median(v)
        out[mask] = (v - med) / max(np.mean(np.abs(v - med)), 1e-6)
    return out


def ref_aligned_maps(p, t, mask, method):
    if method == "lstsq":
        s, shift = ref_align(p[mask], t[mask])
        return s * p + shift, t
    return ref_normalize(p, mask), ref_normalize(t, mask)


def ref_reduce(errors, counts, reduction):
    errors, counts = np.asarray(errors, float), np.asarray(counts, float)
    if reduction == "batch":
        return errors.sum() / counts.sum() if counts.sum() > 0 else 0.0
    valid = counts > 0
    return float(np.mean(errors[valid] / counts[valid])) if valid.any() else 0.0


def ref_ssi(pred, target, mask, method="lstsq", reduction="batch", trim=0.0):
    errors, counts = [], []
    for p, t, m in zip(pred, target, mask):
        ap, at = ref_aligned_maps(p, t, m, method)
        r = (ap - at)[m]
        per_pixel = r**2 if method == "lstsq" else np.abs(r)
        kept = np.sort(per_pixel)[: int(m.sum() * (1 - trim))]
        errors.append(kept.sum() / 2 if method == "lstsq" else kept.sum())
        counts.append(m.sum())
    return ref_reduce(errors, counts, reduction)


def ref_gradient(pred, target, mask, scales=4, reduction="batch"):
    total = 0.0
    for k in range(scales):
        step = 2**k
        errors, counts = [], []
        for p, t, m in zip(pred, target, mask):
            r = ((p - t) * m)[::step, ::step]
            mk = m[::step, ::step].astype(float)
            gx = np.abs(np.diff(r, axis=1)) * mk[:, 1:] * mk[:, :-1]
            gy = np.abs(np.diff(r, axis=0)) * mk[1:, :] * mk[:-1, :]
            errors.append(gx.sum() + gy.sum())
            counts.append(mk.sum())
        total += ref_reduce(errors, counts, reduction)
    return total


def ref_depth_loss(
    pred, target, mask, method="lstsq", alpha=2.0, scales=4, reduction="batch", trim=0.0
):
    aligned = [ref_aligned_maps(p, t, m, method) for p, t, m in zip(pred, target, mask)]
    ap = np.stack([a for a, _ in aligned])
    at = np.stack([b for _, b in aligned])
    ssi = ref_ssi(pred, target, mask, method, reduction, trim)
    return ssi + alpha * ref_gradient(ap, at, mask, scales, reduction)


# ----------------------------------------------------------------------------------------------
# inputs


def random_batch(seed, batch=6, height=9, width=11, dtype=torch.float32):
    """Disparities with per-image masks of very different valid counts, including an empty
    image, a single pixel, two pixels and a full mask."""
    gen = torch.Generator().manual_seed(seed)
    target = torch.rand(batch, height, width, generator=gen, dtype=torch.float64) + 0.1
    pred = 1.5 * target + 0.4 * torch.rand(batch, height, width, generator=gen, dtype=torch.float64)
    fraction = torch.linspace(0.2, 0.9, batch, dtype=torch.float64)[:, None, None]
    mask = torch.rand(batch, height, width, generator=gen, dtype=torch.float64) < fraction
    mask[0] = False
    mask[1] = False
    mask[1, 3, 4] = True
    mask[2] = False
    mask[2, 0, :2] = True
    mask[-1] = True
    return pred.to(dtype), target.to(dtype), mask


def as_np(*tensors):
    """float64 numpy copies; bool masks stay bool."""
    return [t.numpy() if t.dtype == torch.bool else t.detach().double().numpy() for t in tensors]


def tensor(values, dtype=torch.float32):
    return torch.tensor(values, dtype=dtype)


# ----------------------------------------------------------------------------------------------
# hand-computed cases


def test_lstsq_hand_case():
    # fit of [0, 0, 3] by s*[0, 1, 2] + t: s = 1.5, t = -0.5, residuals -0.5, 1, -0.5
    pred, target = tensor([[[0.0, 1.0, 2.0]]]), tensor([[[0.0, 0.0, 3.0]]])
    mask = torch.ones(1, 1, 3, dtype=torch.bool)
    scale, shift = align_lstsq(pred, target, mask)
    assert scale.item() == pytest.approx(1.5)
    assert shift.item() == pytest.approx(-0.5)
    assert ssi_loss(pred, target, mask).item() == pytest.approx(1.5 / 2 / 3)


def test_lstsq_exact_fit_gives_zero_loss_and_recovers_alignment():
    pred = tensor([[[1.0, 2.0], [3.0, 5.0]]])
    target = 2.0 * pred + 1.0
    mask = torch.ones_like(pred, dtype=torch.bool)
    scale, shift = align_lstsq(pred, target, mask)
    assert (scale.item(), shift.item()) == pytest.approx((2.0, 1.0))
    assert depth_loss(pred, target, mask).item() == pytest.approx(0.0, abs=1e-6)


def test_median_normalisation_hand_case():
    # median 2.5, mean absolute deviation (1.5 + 0.5 + 0.5 + 7.5) / 4 = 2.5
    x = tensor([[[1.0, 2.0, 3.0, 10.0]]])
    out = normalize_median(x, torch.ones_like(x, dtype=torch.bool))
    assert out.flatten().tolist() == pytest.approx([-0.6, -0.2, 0.2, 3.0])


def test_median_normalisation_is_zero_outside_mask_and_ignores_invalid_values():
    x = tensor([[[1.0, 2.0, 3.0, 1e6]]])
    mask = torch.tensor([[[True, True, True, False]]])
    out = normalize_median(x, mask)
    # median 2, mean absolute deviation 2/3
    assert out.flatten().tolist() == pytest.approx([-1.5, 0.0, 1.5, 0.0])


def test_median_normalisation_is_scale_invariant_down_to_the_mad_floor():
    x = tensor([[[1.0, 2.0, 3.0, 10.0]]], dtype=torch.float64)
    mask = torch.ones_like(x, dtype=torch.bool)
    assert normalize_median(1e-5 * x, mask).flatten().tolist() == pytest.approx(
        [-0.6, -0.2, 0.2, 3.0]
    )
    # median 0, mean absolute deviation 1e-7 < 1e-6: divided by the floor instead
    tiny = tensor([[[0.0, 0.0, 0.0, 4e-7]]], dtype=torch.float64)
    assert normalize_median(tiny, mask).flatten().tolist() == pytest.approx([0.0, 0.0, 0.0, 0.4])


def test_median_ssi_hand_case():
    # both maps normalise to known values; the loss is the mean absolute difference
    pred = tensor([[[1.0, 2.0, 3.0, 10.0]]])
    target = tensor([[[1.0, 2.0, 3.0, 4.0]]])  # median 2.5, MAD 1 -> [-1.5, -0.5, 0.5, 1.5]
    mask = torch.ones_like(pred, dtype=torch.bool)
    expected = (0.9 + 0.3 + 0.3 + 1.5) / 4
    assert ssi_loss(pred, target, mask, method="median").item() == pytest.approx(expected)


def test_gradient_matching_hand_case():
    residual = tensor([[[0.0, 1.0], [3.0, 3.0]]])
    mask = torch.ones_like(residual, dtype=torch.bool)
    zeros = torch.zeros_like(residual)
    # x: |1-0| + |3-3| = 1, y: |3-0| + |3-1| = 5, over 4 valid pixels; scale 1 is one pixel
    assert gradient_matching_loss(residual, zeros, mask, scales=1).item() == pytest.approx(1.5)
    assert gradient_matching_loss(residual, zeros, mask, scales=2).item() == pytest.approx(1.5)


def test_gradient_matching_needs_both_pixels_valid():
    residual = tensor([[[0.0, 5.0, 1.0]]])
    mask = torch.tensor([[[True, False, True]]])
    loss = gradient_matching_loss(residual, torch.zeros_like(residual), mask, scales=1)
    assert loss.item() == 0.0


def test_trim_hand_case():
    # constant pred -> s = 0, t = mean(target) = 1; per-pixel losses 1, 1, 1, 9
    pred = torch.ones(1, 1, 4)
    target = tensor([[[0.0, 0.0, 0.0, 4.0]]])
    mask = torch.ones_like(pred, dtype=torch.bool)
    assert ssi_loss(pred, target, mask).item() == pytest.approx(12 / 2 / 4)
    # keep int(4 * 0.75) = 3 smallest, divisor stays 4
    assert ssi_loss(pred, target, mask, trim=0.25).item() == pytest.approx(3 / 2 / 4)
    assert ssi_loss(pred, target, mask, trim=0.2).item() == pytest.approx(3 / 2 / 4)


def test_trim_counts_tied_losses_as_often_as_they_fit():
    pred = torch.zeros(1, 1, 5)  # constant -> residual = mean - target
    target = tensor([[[2.0, 2.0, 2.0, 2.0, 7.0]]])  # mean 3: losses 1, 1, 1, 1, 16
    mask = torch.ones_like(pred, dtype=torch.bool)
    assert ssi_loss(pred, target, mask, trim=0.5).item() == pytest.approx(2 / 2 / 5)


def test_reductions_weight_images_differently():
    pred = torch.ones(2, 1, 4)
    target = tensor([[[0.0, 0.0, 0.0, 4.0]], [[0.0, 2.0, 0.0, 0.0]]])
    mask = torch.tensor([[[True] * 4], [[True, True, False, False]]])
    # image 0: e = 6 over 4 pixels; image 1: target [0, 2], mean 1, e = 1 over 2 pixels
    assert ssi_loss(pred, target, mask, reduction="batch").item() == pytest.approx(7 / 6)
    assert ssi_loss(pred, target, mask, reduction="image").item() == pytest.approx(
        (6 / 4 + 1 / 2) / 2
    )


def test_depth_loss_is_ssi_plus_alpha_gradient_and_returns_parts():
    pred, target, mask = random_batch(1)
    total, parts = depth_loss(pred, target, mask, alpha=3.0, return_parts=True)
    assert set(parts) == {"ssi", "gradient"}
    assert parts["ssi"].item() == pytest.approx(ssi_loss(pred, target, mask).item(), rel=1e-6)
    assert total.item() == pytest.approx(
        parts["ssi"].item() + 3.0 * parts["gradient"].item(), rel=1e-6
    )


def test_lstsq_cannot_see_inverted_prediction_but_median_can():
    _, target, mask = random_batch(2)
    inverted = -target
    scale, _ = align_lstsq(inverted, target, mask)
    has_scale = mask.sum(dim=(1, 2)) >= 2
    assert (scale[has_scale] < 0).all()
    assert ssi_loss(inverted, target, mask).item() == pytest.approx(0.0, abs=1e-6)
    assert ssi_loss(inverted, target, mask, method="median").item() > 0.5


# ----------------------------------------------------------------------------------------------
# batched kernels == per-image float64 reference


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_masked_median_matches_numpy(seed):
    gen = torch.Generator().manual_seed(seed)
    values = torch.randint(0, 6, (40, 13), generator=gen).double()  # many ties
    values[::2] = torch.randn(20, 13, generator=gen, dtype=torch.float64)
    mask = torch.rand(40, 13, generator=gen) < torch.rand(40, 1, generator=gen)
    mask[0] = False
    mask[1] = True
    expected = [np.median(v[m].numpy()) if m.any() else 0.0 for v, m in zip(values, mask)]
    np.testing.assert_allclose(masked_median(values, mask).numpy(), expected, rtol=0, atol=0)


@pytest.mark.parametrize("method", ["lstsq", "median"])
@pytest.mark.parametrize("reduction", ["batch", "image"])
@pytest.mark.parametrize("trim", [0.0, 0.1, 0.2])
def test_ssi_matches_reference(method, reduction, trim):
    for seed in range(3):
        pred, target, mask = random_batch(seed)
        got = ssi_loss(pred, target, mask, method=method, reduction=reduction, trim=trim)
        expected = ref_ssi(*as_np(pred, target, mask), method, reduction, trim)
        assert got.dtype == torch.float32 and got.ndim == 0
        np.testing.assert_allclose(got.item(), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("reduction", ["batch", "image"])
@pytest.mark.parametrize("scales", [1, 4])
def test_gradient_matching_matches_reference(reduction, scales):
    pred, target, mask = random_batch(4, height=16, width=13)
    got = gradient_matching_loss(pred, target, mask, scales=scales, reduction=reduction)
    expected = ref_gradient(*as_np(pred, target, mask), scales, reduction)
    np.testing.assert_allclose(got.item(), expected, rtol=1e-5)


@pytest.mark.parametrize("method", ["lstsq", "median"])
@pytest.mark.parametrize("reduction", ["batch", "image"])
def test_depth_loss_matches_reference(method, reduction):
    for seed in range(3):
        pred, target, mask = random_batch(seed, height=12, width=10)
        got = depth_loss(pred, target, mask, method=method, reduction=reduction, trim=0.1)
        expected = ref_depth_loss(*as_np(pred, target, mask), method, 2.0, 4, reduction, 0.1)
        np.testing.assert_allclose(got.item(), expected, rtol=1e-5)


def test_align_lstsq_matches_reference_and_singular_fallback():
    pred, target, mask = random_batch(5)
    pred[3] = 0.7  # constant prediction
    scale, shift = align_lstsq(pred, target, mask)
    p, t, m = as_np(pred, target, mask)
    expected = [ref_align(pi[mi], ti[mi]) for pi, ti, mi in zip(p, t, m)]
    np.testing.assert_allclose(scale.numpy(), [s for s, _ in expected], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(shift.numpy(), [t for _, t in expected], rtol=1e-5, atol=1e-6)
    assert scale[0] == 0 and shift[0] == 0  # no valid pixel
    assert scale[1] == 0 and shift[1] == pytest.approx(target[1, 3, 4].item())  # one pixel
    assert scale[3] == 0  # constant


# ----------------------------------------------------------------------------------------------
# gradients


def _gradcheck(fn, pred, *args):
    pred = pred.double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: fn(p, *args), (pred,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("method", ["lstsq", "median"])
@pytest.mark.parametrize("trim", [0.0, 0.2])
def test_ssi_gradcheck(method, trim):
    pred, target, mask = random_batch(6, batch=4, height=5, width=6, dtype=torch.float64)
    _gradcheck(lambda p, t, m: ssi_loss(p, t, m, method=method, trim=trim), pred, target, mask)


def test_gradient_matching_gradcheck():
    pred, target, mask = random_batch(7, batch=3, height=6, width=5, dtype=torch.float64)
    _gradcheck(
        lambda p, t, m: gradient_matching_loss(p, t, m, reduction="image"), pred, target, mask
    )


@pytest.mark.parametrize("method", ["lstsq", "median"])
def test_depth_loss_gradcheck(method):
    pred, target, mask = random_batch(8, batch=4, height=6, width=5, dtype=torch.float64)
    _gradcheck(lambda p, t, m: depth_loss(p, t, m, method=method, trim=0.1), pred, target, mask)


def test_masked_median_gradient_goes_to_the_middle_values():
    values = tensor([[4.0, 1.0, 3.0, 2.0, 100.0]], dtype=torch.float64).requires_grad_(True)
    mask = torch.tensor([[True, True, True, True, False]])
    masked_median(values, mask).sum().backward()
    assert values.grad.flatten().tolist() == [0.0, 0.0, 0.5, 0.5, 0.0]


# ----------------------------------------------------------------------------------------------
# degenerate inputs: finite, 0-dim, differentiable


def _degenerate_cases():
    shape = (3, 4, 5)
    ones = torch.ones(shape, dtype=torch.bool)
    some = torch.rand(shape, generator=torch.Generator().manual_seed(0)) < 0.6
    single = torch.zeros(shape, dtype=torch.bool)
    single[:, 1, 2] = True
    rand = torch.rand(shape, generator=torch.Generator().manual_seed(1)) + 0.1
    return {
        "empty mask": (rand, rand.flip(0), torch.zeros(shape, dtype=torch.bool)),
        "single pixel": (rand, rand.flip(0), single),
        "constant pred": (torch.full(shape, 0.3), rand, some),
        "constant target": (rand, torch.full(shape, 2.0), some),
        "all zero": (torch.zeros(shape), torch.zeros(shape), ones),
        "inf target off mask": (rand, torch.where(some, rand, float("inf")), some),
    }


@pytest.mark.parametrize("case", list(_degenerate_cases()))
@pytest.mark.parametrize("method", ["lstsq", "median"])
@pytest.mark.parametrize("reduction", ["batch", "image"])
def test_degenerate_inputs_stay_finite_and_differentiable(case, method, reduction):
    pred, target, mask = _degenerate_cases()[case]
    for trim in (0.0, 0.2):
        leaf = pred.clone().requires_grad_(True)
        total, parts = depth_loss(
            leaf, target, mask, method=method, reduction=reduction, trim=trim, return_parts=True
        )
        assert total.ndim == 0 and torch.isfinite(total)
        assert all(torch.isfinite(v) for v in parts.values())
        total.backward()
        assert leaf.grad is not None and torch.isfinite(leaf.grad).all()


def test_empty_batch_gives_zero_with_a_graph():
    pred = torch.rand(2, 3, 3, requires_grad=True)
    mask = torch.zeros(2, 3, 3, dtype=torch.bool)
    for method in ("lstsq", "median"):
        loss = depth_loss(pred, torch.rand(2, 3, 3), mask, method=method)
        assert loss.item() == 0.0
        (grad,) = torch.autograd.grad(loss, pred)
        assert (grad == 0).all()


def test_empty_image_contributes_nothing():
    pred, target, mask = random_batch(9)
    for reduction in ("batch", "image"):
        for method in ("lstsq", "median"):
            full = ssi_loss(pred, target, mask, method=method, reduction=reduction)
            without = ssi_loss(pred[1:], target[1:], mask[1:], method=method, reduction=reduction)
            assert full.item() == pytest.approx(without.item(), rel=1e-6)


# ----------------------------------------------------------------------------------------------
# precision and input checks


@pytest.mark.parametrize("method", ["lstsq", "median"])
def test_bf16_autocast_computes_in_float32(method):
    pred, target, mask = random_batch(10, height=16, width=16)
    pred_bf16 = pred.bfloat16().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = depth_loss(pred_bf16, target, mask, method=method, trim=0.1)
    expected = depth_loss(pred_bf16.detach().float(), target, mask, method=method, trim=0.1)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert pred_bf16.grad.dtype == torch.bfloat16 and torch.isfinite(pred_bf16.grad.float()).all()


def test_float64_inputs_stay_float64():
    pred, target, mask = random_batch(11, dtype=torch.float64)
    assert depth_loss(pred, target, mask).dtype == torch.float64


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"method": "mean"}, "method"),
        ({"reduction": "sum"}, "reduction"),
        ({"trim": 1.0}, "trim"),
        ({"trim": -0.1}, "trim"),
        ({"scales": 0}, "scales"),
    ],
)
def test_bad_options_name_the_parameter(kwargs, word):
    pred, target, mask = random_batch(12)
    with pytest.raises(ValueError, match=word):
        depth_loss(pred, target, mask, **kwargs)


def test_bad_shapes_and_mask_dtype_are_reported():
    pred, target, mask = random_batch(13)
    with pytest.raises(ValueError, match="target"):
        ssi_loss(pred, target[:, :-1], mask)
    with pytest.raises(ValueError, match="pred"):
        ssi_loss(pred[0], target[0], mask[0])
    with pytest.raises(TypeError, match="mask"):
        ssi_loss(pred, target, mask.float())


def test_loss_terms_reject_unknown_keys_and_feed_depth_loss():
    with pytest.raises(ValueError, match="extra"):
        LossTerms(methd="median")

    class WithRegulariser(LossTerms):  # how the trainer's config extends the shared knobs
        weight_decay: float = 0.1

    terms = WithRegulariser(method="median", alpha=0.5, scales=2, reduction="image")
    assert set(terms.loss_kwargs()) == {"method", "alpha", "scales", "reduction"}
    pred, target, mask = random_batch(14)
    assert depth_loss(pred, target, mask, **terms.loss_kwargs(), trim=0.1).item() == pytest.approx(
        depth_loss(
            pred, target, mask, method="median", alpha=0.5, scales=2, reduction="image", trim=0.1
        ).item()
    )
