"""Tiny model configurations so that model tests run in seconds on two CPU cores."""

import pytest

from tests.helpers import TINY_VIT

TINY_VIT_PATCH8 = dict(TINY_VIT, patch_size=8)
TINY_CONVNEXT = {
    "backbone": "convnext_atto",
    "features": 16,
    "img_size": 64,
    "backbone_kwargs": {"dims": (16, 24, 32, 48), "depths": (1, 1, 1, 1)},
}


@pytest.fixture(params=["vit16", "vit8", "convnext"])
def tiny_config(request):
    return {"vit16": TINY_VIT, "vit8": TINY_VIT_PATCH8, "convnext": TINY_CONVNEXT}[request.param]


@pytest.fixture
def tiny_vit():
    return dict(TINY_VIT)


@pytest.fixture
def tiny_convnext():
    return dict(TINY_CONVNEXT)
