"""Scale-and-shift-invariant depth losses (MiDaS / Depth Anything), batched over images.

Every kernel works on a whole batch at once: images with different numbers of valid pixels are
handled with masks, padding and rank tricks instead of a Python loop, so the loss costs a few
tensor ops whatever the batch size. All maths runs in at least float32 (inputs in bf16/fp16 are
cast up and autocast is switched off inside), and every function returns a finite 0-dim tensor
that is differentiable w.r.t. ``pred``, also for empty masks, constant maps and single pixels.

Shapes: ``pred`` and ``target`` are disparity-like float ``(B, H, W)``; ``mask`` is bool
``(B, H, W)``.

Least-squares alignment is blind to the sign of the scale: a model can learn inverted depth
(``scale < 0``) while the loss looks fine. ``align_lstsq`` exposes the per-image scale so callers
can log it; ``depth_core.metrics`` reports it as ``inverted_fraction``.
"""

from __future__ import annotations

import contextlib
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

Method = Literal["lstsq", "median"]
Reduction = Literal["batch", "image"]

_METHODS = ("lstsq", "median")
_REDUCTIONS = ("batch", "image")
# Lower bound of the mean absolute deviation in median normalisation (MiDaS / Depth Anything).
MAD_EPS = 1e-6
# A prediction whose centred sum of squares is below this fraction of its raw sum of squares is
# treated as constant: float32 cannot resolve a scale from it.
_SINGULAR_RTOL = 1e-10


class LossTerms(BaseModel):
    """What every use of ``depth_loss`` configures: the alignment and the terms' weights.

    The trainer's ``TrainLossConfig`` adds per-group trims (ground truth vs pseudo-labels) and
    its regularisers; ``loss_kwargs`` passes only these shared knobs on.
    """

    model_config = ConfigDict(extra="forbid")

    method: Method = "lstsq"
    alpha: float = Field(2.0, ge=0.0, description="weight of the gradient-matching term")
    scales: int = Field(4, ge=1, description="number of gradient-matching scales (2^k strides)")
    reduction: Reduction = "batch"

    def loss_kwargs(self) -> dict:
        """The shared keyword arguments of ``depth_loss``."""
        return {name: getattr(self, name) for name in LossTerms.model_fields}


# ----------------------------------------------------------------------------------------------
# input handling


def _check_inputs(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
    for name, value in (("pred", pred), ("target", target), ("mask", mask)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if pred.ndim != 3:
        raise ValueError(f"pred must have shape (B, H, W), got {tuple(pred.shape)}")
    if target.shape != pred.shape:
        raise ValueError(
            f"target shape {tuple(target.shape)} differs from pred {tuple(pred.shape)}"
        )
    if mask.shape != pred.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} differs from pred {tuple(pred.shape)}")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor, got {mask.dtype}")
    if not pred.is_floating_point():
        raise TypeError(f"pred must be a floating-point tensor, got {pred.dtype}")


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _check_trim(trim: float) -> None:
    if not 0.0 <= trim < 1.0:
        raise ValueError(f"trim must be in [0, 1), got {trim}")


def _check_scales(scales: int) -> None:
    if isinstance(scales, bool) or not isinstance(scales, int) or scales < 1:
        raise ValueError(f"scales must be a positive int, got {scales!r}")


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float32 for half/bf16/float32 inputs; float64 stays float64 (gradient checks)."""
    return torch.promote_types(x.dtype, torch.float32)


def _full_precision(device: torch.device):
    """Switch autocast off so reductions and divisions are not run in bf16/fp16."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def _prepare(pred, target, mask):
    """Checked inputs in the compute dtype; invalid target pixels may hold anything (inf from
    1/0 depth, NaN) and are zeroed so that masking by multiplication stays finite."""
    _check_inputs(pred, target, mask)
    dtype = _compute_dtype(pred)
    target = torch.nan_to_num(target.to(dtype), nan=0.0, posinf=0.0, neginf=0.0)
    return pred.to(dtype), target, mask


def _float_mask(mask, dtype):
    m = mask.to(dtype)
    return m, m.sum(dim=(1, 2))


# ----------------------------------------------------------------------------------------------
# masked statistics
#
# Hot paths use float arithmetic only: masks are applied by multiplying with a float copy of
# the mask, and indicators come from sign/clamp rather than comparisons. On CPU, kernels that
# read or write bool tensors (``where``, ``masked_fill``, comparisons, bool->float) cost 5-30x
# more than a float multiplication. Values at invalid pixels must therefore be finite
# (``target`` is sanitised on entry).


def _align_lstsq(pred, target, m, count):
    """Per-image least-squares (s, t); centred form of the 2x2 normal equations."""
    safe_count = count.clamp(min=1.0)
    pred_m = pred * m
    mean_p = pred_m.sum(dim=(1, 2)) / safe_count
    mean_t = (target * m).sum(dim=(1, 2)) / safe_count
    p_c = (pred - mean_p[:, None, None]) * m
    t_c = (target - mean_t[:, None, None]) * m
    var = (p_c * p_c).sum(dim=(1, 2))
    cov = (p_c * t_c).sum(dim=(1, 2))
    raw = (pred_m * pred_m).sum(dim=(1, 2))
    singular = (count < 2) | (var <= _SINGULAR_RTOL * raw)
    scale = torch.where(singular, 0.0, cov / torch.where(singular, 1.0, var))
    shift = mean_t - scale * mean_p
    return scale, shift


def _l1(x):
    """Per-image sum of |x| over (H, W)."""
    return x.abs().sum(dim=(1, 2))


def _is_positive(x):
    """1.0 where x > 0, else 0.0 (float in, float out, in place)."""
    return x.clamp_(min=0.0).sign_()


def _rank_padding(m, rank, position):
    """Fill values that put each row's valid value of 0-based ``rank`` at sorted ``position``.

    ``m`` is the float mask (B, N), ``rank`` a float tensor (B,) of whole numbers. Invalid
    entries become ``-big`` (the first ``position - rank`` of them) or ``+big`` (the rest), valid
    ones get 0, so that ``values * m + fill`` lets one batched ``kthvalue`` serve rows with
    different valid counts. Needs ``rank <= position <= rank + invalid count``; other rows give
    garbage that the caller discards.
    """
    big = torch.finfo(m.dtype).max
    # Counting in float is exact up to 2^24 pixels per image in float32.
    count_dtype = m.dtype if m.shape[1] < 2**24 else torch.float64
    with torch.no_grad():
        invalid = 1.0 - m
        invalid_rank = torch.cumsum(invalid, dim=1, dtype=count_dtype)  # 1, 2, ... on invalid
        # positive (-> -big) on the first position - rank invalid entries, negative after them
        side = torch.sub((position - rank).to(count_dtype)[:, None] + 0.5, invalid_rank)
        return side.sign_().mul_(invalid).mul_(-big).to(m.dtype)


class _MedianPadding:
    """Everything a masked median needs that depends on the mask only (shared by pred and
    target, which have the same mask)."""

    def __init__(self, m):
        self.m = m
        self.count = m.sum(dim=1)
        self.position = (m.shape[1] - 1) // 2  # sorted position of the lower middle value
        self.fill = _rank_padding(m, torch.floor((self.count - 1.0) / 2.0), self.position)


def _masked_median(flat, padding):
    """Numpy-semantics median per row over valid entries; 0 for rows without any.

    The order statistics are located without autograd; the gradient then flows through one
    ``gather`` of the (at most two) middle values instead of through full-size temporaries.
    """
    position = padding.position
    with torch.no_grad():
        padded = torch.addcmul(padding.fill, flat, padding.m)
        lower, lower_index = torch.kthvalue(padded, position + 1, dim=1)
        # Upper middle value (even counts): the smallest entry above `lower`, unless `lower`
        # is tied with the next order statistic.
        above = _is_positive(padded - lower[:, None])
        ties = above.sum(dim=1) <= padded.shape[1] - position - 2
        penalty = (1.0 - above).mul_(torch.finfo(flat.dtype).max)
        key = torch.addcmul(penalty, padded, above)
        upper_index = key.argmin(dim=1)
        even = torch.remainder(padding.count, 2.0) == 0
        upper_index = torch.where(ties | ~even, lower_index, upper_index)
    middle = flat.gather(1, torch.stack([lower_index, upper_index], dim=1))
    median = 0.5 * (middle[:, 0] + middle[:, 1])
    return torch.where(padding.count > 0, median, 0.0)


def _centred_and_inverse_scale(x, m, count, padding):
    """``x - median`` (zero outside the mask) and ``1 / max(MAD, 1e-6)`` per image."""
    median = _masked_median(x.reshape(x.shape[0], -1), padding)
    centred = (x - median[:, None, None]).mul_(m)
    mad = _l1(centred) / count.clamp(min=1.0)
    return centred, 1.0 / mad.clamp(min=MAD_EPS)[:, None, None]


def _normalized(x, m, count, padding):
    """Median/MAD normalised map, zero outside the mask."""
    centred, inverse_scale = _centred_and_inverse_scale(x, m, count, padding)
    return centred * inverse_scale


def _residual(pred, target, m, count, method):
    """aligned_pred - aligned_target, zero outside the mask."""
    if method == "lstsq":
        scale, shift = _align_lstsq(pred, target, m, count)
        return (torch.addcmul(shift[:, None, None], scale[:, None, None], pred) - target) * m
    padding = _MedianPadding(m.reshape(m.shape[0], -1))
    centred_p, inverse_p = _centred_and_inverse_scale(pred, m, count, padding)
    centred_t, inverse_t = _centred_and_inverse_scale(target, m, count, padding)
    return torch.addcmul(centred_p * inverse_p, centred_t, -inverse_t)


# ----------------------------------------------------------------------------------------------
# reductions


def _kept_sum(per_pixel, m, trim):
    """Per image, the sum of the int(M_b * (1 - trim)) smallest per-pixel losses.

    ``per_pixel`` is zero outside the mask. The largest kept loss comes from one batched rank
    selection; losses tied with it are counted in exactly as many times as still fit.
    """
    flat = per_pixel.reshape(per_pixel.shape[0], -1)
    if trim == 0.0:
        return flat.sum(dim=1)
    m = m.reshape(m.shape[0], -1)
    count = m.sum(dim=1)
    keep_dtype = torch.float32 if flat.device.type == "mps" else torch.float64
    keep = torch.floor(count.to(keep_dtype) * (1.0 - trim)).to(flat.dtype)
    position = max(int(flat.shape[1] * (1.0 - trim)) - 1, 0)
    with torch.no_grad():
        fill = _rank_padding(m, (keep - 1.0).clamp(min=0.0), position)
        index = torch.kthvalue(torch.addcmul(fill, flat, m), position + 1, dim=1).indices
    threshold = torch.where(keep > 0, flat.gather(1, index[:, None])[:, 0], 0.0)
    with torch.no_grad():
        below = _is_positive(threshold[:, None] - flat).mul_(m)
    kept = (flat * below).sum(dim=1) + threshold * (keep - below.sum(dim=1))
    return torch.where(keep > 0, kept, 0.0)


def _reduce(per_image_sum, count, reduction):
    """Batch: sum_b e_b / sum_b M_b. Image: mean over images with M_b > 0 of e_b / M_b."""
    if reduction == "batch":
        return per_image_sum.sum() / count.sum().clamp(min=1.0)
    has_pixels = count > 0
    ratio = per_image_sum / count.clamp(min=1.0)
    return torch.where(has_pixels, ratio, 0.0).sum() / has_pixels.sum().clamp(min=1)


def _ssi_from_residual(residual, m, count, method, reduction, trim):
    if method == "lstsq":
        per_image = 0.5 * _kept_sum(residual * residual, m, trim)
    elif trim == 0.0:
        per_image = _l1(residual)
    else:
        per_image = _kept_sum(residual.abs(), m, trim)
    return _reduce(per_image, count, reduction)


def _reduction_weights(count, reduction):
    """Per-image weights w_b such that _reduce(e, count) == sum_b w_b * e_b."""
    if reduction == "batch":
        return (1.0 / count.sum().clamp(min=1.0)).expand_as(count)
    has_pixels = (count > 0).to(count.dtype)
    return has_pixels / (count.clamp(min=1.0) * has_pixels.sum().clamp(min=1.0))


class _GradientMatching(torch.autograd.Function):
    """Sum over scales of the masked gradient magnitude of a residual that is zero off-mask.

    Written out by hand because autograd through the strided slices materialises a full-size
    zero tensor per slice in the backward pass; here the forward keeps each difference's sign
    (its subgradient, 0 where a pixel of the pair is invalid) and the backward adds them into
    one buffer.
    """

    @staticmethod
    def forward(ctx, residual, m, scales, reduction):
        total = residual.new_zeros(())
        signs, weights = [], []
        for k in range(scales):
            step = 2**k
            r = residual[:, ::step, ::step]
            mk = m[:, ::step, ::step]
            dx = (r[:, :, 1:] - r[:, :, :-1]).mul_(mk[:, :, 1:] * mk[:, :, :-1])
            dy = (r[:, 1:, :] - r[:, :-1, :]).mul_(mk[:, 1:, :] * mk[:, :-1, :])
            signs += [dx.sign(), dy.sign()]
            per_image = dx.abs_().sum(dim=(1, 2)) + dy.abs_().sum(dim=(1, 2))
            weights.append(_reduction_weights(mk.sum(dim=(1, 2)), reduction))
            total += (weights[-1] * per_image).sum()
        ctx.save_for_backward(*signs, *weights)
        ctx.scales, ctx.shape = scales, residual.shape
        return total

    @staticmethod
    def backward(ctx, grad_output):
        saved = ctx.saved_tensors
        signs, weights = saved[: 2 * ctx.scales], saved[2 * ctx.scales :]
        grad = grad_output.new_zeros(ctx.shape)
        for k in range(ctx.scales):
            step = 2**k
            g = grad[:, ::step, ::step]
            weight = (weights[k] * grad_output)[:, None, None]
            dx, dy = signs[2 * k] * weight, signs[2 * k + 1] * weight
            g[:, :, 1:] += dx
            g[:, :, :-1] -= dx
            g[:, 1:, :] += dy
            g[:, :-1, :] -= dy
        return grad, None, None, None


def _gradient_matching(residual, m, scales, reduction):
    return _GradientMatching.apply(residual, m, scales, reduction)


# ----------------------------------------------------------------------------------------------
# public API


def align_lstsq(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image (scale, shift), each ``(B,)``, minimising sum over valid pixels of
    ``(scale * pred + shift - target)^2``.

    Singular systems (fewer than 2 valid pixels, or a constant prediction) fall back to
    ``scale = 0`` and ``shift = mean(target)`` over valid pixels (``0`` without any).
    The scale may be negative: that is an inverted prediction, which this loss cannot see.
    """
    pred, target, mask = _prepare(pred, target, mask)
    with _full_precision(pred.device):
        m, count = _float_mask(mask, pred.dtype)
        return _align_lstsq(pred, target, m, count)


def masked_median(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image median over valid pixels with numpy semantics (even counts average the two
    middle values), ``(B,)``; ``0`` for an image without valid pixels. Differentiable."""
    if not isinstance(values, torch.Tensor) or values.ndim < 2 or mask.shape != values.shape:
        raise ValueError(
            f"values must be (B, ...) with a mask of the same shape, got "
            f"{tuple(getattr(values, 'shape', ()))} and {tuple(mask.shape)}"
        )
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor, got {mask.dtype}")
    values = values.to(_compute_dtype(values))
    with _full_precision(values.device):
        flat = values.reshape(values.shape[0], -1)
        m = mask.reshape(mask.shape[0], -1).to(flat.dtype)
        return _masked_median(torch.nan_to_num(flat * m), _MedianPadding(m))


def normalize_median(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per image ``(x - median) / max(mean |x - median|, 1e-6)`` over valid pixels; zero
    outside the mask. Keeps the sign of the map, unlike least-squares alignment."""
    if not isinstance(x, torch.Tensor) or x.ndim != 3 or mask.shape != x.shape:
        raise ValueError(
            f"x must be (B, H, W) with a mask of the same shape, got "
            f"{tuple(getattr(x, 'shape', ()))} and {tuple(mask.shape)}"
        )
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor, got {mask.dtype}")
    x = x.to(_compute_dtype(x))
    with _full_precision(x.device):
        m, count = _float_mask(mask, x.dtype)
        padding = _MedianPadding(m.reshape(m.shape[0], -1))
        return _normalized(torch.nan_to_num(x * m), m, count, padding)


def ssi_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    method: Method = "lstsq",
    reduction: Reduction = "batch",
    trim: float = 0.0,
) -> torch.Tensor:
    """Scale-and-shift-invariant loss.

    ``lstsq`` (MiDaS): per-pixel ``r^2`` after least-squares alignment, per image halved.
    ``median`` (MiDaS ssitrim / Depth Anything V1): per-pixel ``|pred_hat - target_hat|`` after
    median/MAD normalisation of both maps. ``trim`` drops each image's largest per-pixel losses
    (the divisor stays the valid-pixel count).
    """
    _check_choice("method", method, _METHODS)
    _check_choice("reduction", reduction, _REDUCTIONS)
    _check_trim(trim)
    pred, target, mask = _prepare(pred, target, mask)
    with _full_precision(pred.device):
        m, count = _float_mask(mask, pred.dtype)
        residual = _residual(pred, target, m, count, method)
        return _ssi_from_residual(residual, m, count, method, reduction, trim)


def gradient_matching_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    scales: int = 4,
    reduction: Reduction = "batch",
) -> torch.Tensor:
    """Multi-scale gradient matching on an already aligned prediction, summed over scales.

    Scale k looks at every 2^k-th pixel; a difference counts only where both pixels are valid.
    """
    _check_scales(scales)
    _check_choice("reduction", reduction, _REDUCTIONS)
    pred, target, mask = _prepare(pred, target, mask)
    with _full_precision(pred.device):
        m, _ = _float_mask(mask, pred.dtype)
        return _gradient_matching((pred - target) * m, m, scales, reduction)


def depth_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    method: Method = "lstsq",
    alpha: float = 2.0,
    scales: int = 4,
    reduction: Reduction = "batch",
    trim: float = 0.0,
    return_parts: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``ssi_loss + alpha * gradient_matching_loss`` on the aligned maps (Depth Anything V2
    weights them 1:2). The alignment is computed once and shared by both terms: for ``lstsq``
    the aligned maps are ``s * pred + t`` and ``target``, for ``median`` both normalised maps.

    With ``return_parts=True`` returns ``(total, {"ssi": ..., "gradient": ...})``; the parts are
    detached, for logging.
    """
    _check_choice("method", method, _METHODS)
    _check_choice("reduction", reduction, _REDUCTIONS)
    _check_trim(trim)
    _check_scales(scales)
    pred, target, mask = _prepare(pred, target, mask)
    with _full_precision(pred.device):
        m, count = _float_mask(mask, pred.dtype)
        residual = _residual(pred, target, m, count, method)
        ssi = _ssi_from_residual(residual, m, count, method, reduction, trim)
        gradient = _gradient_matching(residual, m, scales, reduction)
        total = ssi + alpha * gradient
    if return_parts:
        return total, {"ssi": ssi.detach(), "gradient": gradient.detach()}
    return total
