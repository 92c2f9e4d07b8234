"""Hugging Face depth models behind DepthModel's contract: same numbers as the model itself
(predict against transformers' pipeline: test_transformers_fidelity.py)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from depth_core.device import autocast
from depth_core.inference import prepare_for_inference
from depth_core.model_loading import load_depth_model
from depth_core.models.transformers_teacher import TransformersDepthModel
from depth_core.models.weights import IMAGENET_MEAN, IMAGENET_STD
from tests.helpers import save_tiny_depth_anything, save_tiny_dpt

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def relative_folder(tmp_path_factory):
    return save_tiny_depth_anything(tmp_path_factory.mktemp("hf") / "da-relative")


@pytest.fixture(scope="module")
def metric_folder(tmp_path_factory):
    return save_tiny_depth_anything(tmp_path_factory.mktemp("hf") / "da-metric", "metric", seed=1)


def _hf_model(folder):
    """The model as transformers itself loads it: the reference the wrapper must match."""
    from transformers import AutoModelForDepthEstimation

    return AutoModelForDepthEstimation.from_pretrained(folder, local_files_only=True).eval()


def test_wrapper_reads_the_processor_and_the_config(relative_folder):
    model, metadata = load_depth_model(relative_folder)
    assert isinstance(model, TransformersDepthModel)
    assert model.config.img_size == 56 and model.input_multiple == (14, 14)
    assert metadata["source"] == "transformers" and metadata["model_type"] == "depth_anything"
    assert metadata["depth_type"] == "relative"
    assert tuple(metadata["image_mean"]) == IMAGENET_MEAN
    assert not model.training


def test_metric_model_is_inverted_and_relative_is_not(relative_folder, metric_folder):
    x = torch.rand(2, 3, 42, 56, generator=torch.Generator().manual_seed(0))
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    for folder, invert in ((metric_folder, True), (relative_folder, False)):
        model, metadata = load_depth_model(folder)
        assert metadata["depth_type"] == ("metric" if invert else "relative")
        with torch.no_grad():
            depth = _hf_model(folder)(pixel_values=(x - mean) / std).predicted_depth
            ours = model(x)
        expected = 1.0 / depth.clamp(min=1e-3) if invert else depth
        torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


def test_any_input_size_runs_at_the_processor_resolution(relative_folder):
    """evaluate_model calls forward on raw dataset images: the network still sees 56 px."""
    model, _ = load_depth_model(relative_folder)
    seen = []
    model.model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(tuple(kwargs["pixel_values"].shape[-2:])),
        with_kwargs=True,
    )
    with torch.no_grad():
        out = model(torch.rand(3, 3, 48, 64))
    assert out.shape == (3, 48, 64) and out.dtype == torch.float32 and out.min() >= 0
    assert seen == [(42, 56)]


def test_preprocessing_falls_back_to_the_config_and_dpt_defaults(tmp_path):
    folder = save_tiny_depth_anything(tmp_path / "no-processor", processor=False, image_size=70)
    _, metadata = load_depth_model(folder)
    assert metadata["img_size"] == 70  # the DINOv2 backbone's image_size
    assert metadata["image_mean"] == (0.5, 0.5, 0.5) and metadata["image_std"] == (0.5, 0.5, 0.5)
    dpt, metadata = load_depth_model(save_tiny_dpt(tmp_path / "dpt"))
    assert metadata["model_type"] == "dpt" and metadata["depth_type"] == "relative"
    assert metadata["img_size"] == 32 and dpt.input_multiple == (16, 16)
    with torch.no_grad():
        out = dpt(torch.rand(2, 3, 40, 50))
    assert out.shape == (2, 40, 50) and out.min() >= 0 and float(out.std()) > 0


def test_bf16_inference_as_pseudo_labelling_prepares_it(relative_folder):
    model, _ = load_depth_model(relative_folder)
    x = torch.rand(2, 3, 42, 56, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fp32 = model(x)
    fast = prepare_for_inference(model, "bf16")
    with torch.inference_mode(), autocast(torch.device("cpu"), "bf16"):
        bf16 = fast(x)
    assert bf16.dtype == torch.float32 and torch.isfinite(bf16).all()
    assert float((bf16 - fp32).abs().mean() / fp32.abs().mean()) < 0.05
