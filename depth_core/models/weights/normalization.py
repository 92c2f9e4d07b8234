"""The input normalisation a backbone's weights were trained with.

A pretrained encoder only transfers when its inputs are normalised as in its pretraining: the
TF-ported EfficientNet-Lite weights expect mean 0.5 / std 0.5, most timm weights ImageNet's
statistics. The choice is resolved once when a model is built and stored in its checkpoint.
"""

from __future__ import annotations

from depth_core.models.weights.sources import PACKAGE_PREFIX, packaged_source

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Triple = tuple[float, float, float]


def input_normalization(backbone: str, pretrained: str | None) -> tuple[Triple, Triple]:
    """(mean, std) for ``backbone``: the packaged source's, else timm's pretrained config's."""
    if pretrained is not None and pretrained.startswith(PACKAGE_PREFIX):
        source = packaged_source(pretrained[len(PACKAGE_PREFIX) :])
        return source.mean, source.std
    import timm

    cfg = timm.get_pretrained_cfg(backbone, allow_unregistered=True)
    mean = tuple(float(v) for v in getattr(cfg, "mean", None) or IMAGENET_MEAN)
    std = tuple(float(v) for v in getattr(cfg, "std", None) or IMAGENET_STD)
    if len(mean) != 3 or len(std) != 3:  # single-channel pretraining: fall back to RGB stats
        return IMAGENET_MEAN, IMAGENET_STD
    return mean, std  # type: ignore[return-value]
