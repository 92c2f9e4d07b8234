"""A Hugging Face folder predicts what transformers' own depth-estimation pipeline gives.

The reference is `pipeline("depth-estimation")`'s ``predicted_depth`` (DPTImageProcessor in,
``post_process_depth_estimation`` out, at the image's size), made non-negative disparity as every
depth-distill model outputs (metric depth inverted).
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from depth_core.inference import predict_disparity
from depth_core.model_loading import load_depth_model
from depth_core.models.transformers_teacher import METRIC_MIN_DEPTH
from tests.helpers import save_tiny_depth_anything, save_tiny_dpt

pytest.importorskip("transformers")

RELEASED_V2 = {"size": {"height": 518, "width": 518}, "keep_aspect_ratio": True,
               "ensure_multiple_of": 14, "resample": 3, "do_pad": False}  # fmt: skip


def _positive_head(folder, bias: float) -> None:
    """Shift the random head's last bias so most pixels are above ReLU's zero."""
    from transformers import AutoModelForDepthEstimation

    model = AutoModelForDepthEstimation.from_pretrained(folder, local_files_only=True)
    head = model.head.conv3 if hasattr(model.head, "conv3") else model.head.head[-2]
    torch.nn.init.constant_(head.bias, bias)
    model.save_pretrained(folder)


def _write_processor(folder, **settings) -> None:
    from transformers import DPTImageProcessor

    DPTImageProcessor(**settings).save_pretrained(folder)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("fidelity")
    da = save_tiny_depth_anything(root / "da", image_size=518)
    _positive_head(da, 4.0)
    _write_processor(da, **RELEASED_V2)
    metric = save_tiny_depth_anything(root / "metric", "metric", image_size=70, seed=1)
    _write_processor(metric, size={"height": 70, "width": 56}, keep_aspect_ratio=True,
                     ensure_multiple_of=14, resample=2)  # fmt: skip
    dpt_square = save_tiny_dpt(root / "dpt-square")
    _positive_head(dpt_square, 2.0)
    _write_processor(dpt_square, size={"height": 48, "width": 48}, keep_aspect_ratio=False,
                     resample=3, image_mean=[0.5] * 3, image_std=[0.5] * 3)  # fmt: skip
    dpt_padded = save_tiny_dpt(root / "dpt-padded", seed=2)
    _positive_head(dpt_padded, 2.0)
    # transformers' ViT-backed DPT runs square inputs only: resized to 40 x 40, padded to 48.
    _write_processor(dpt_padded, size={"height": 40, "width": 40}, keep_aspect_ratio=False,
                     do_pad=True, size_divisor=16, resample=3)  # fmt: skip
    return {"da": da, "metric": metric, "dpt_square": dpt_square, "dpt_padded": dpt_padded}


def _pipeline_disparity(folder, image: np.ndarray, metric: bool) -> np.ndarray:
    from PIL import Image
    from transformers import pipeline

    depth = pipeline("depth-estimation", model=str(folder), device="cpu")(Image.fromarray(image))
    depth = depth["predicted_depth"].float().numpy()
    return 1.0 / np.maximum(depth, METRIC_MIN_DEPTH) if metric else np.maximum(depth, 0.0)


def _relative_difference(ours: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(ours - reference).mean() / np.abs(reference).mean())


SHAPES = {"landscape": (480, 640), "portrait": (90, 50), "tiny": (5, 7)}


@pytest.mark.parametrize("name", ["da", "metric", "dpt_square", "dpt_padded"])
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_predict_equals_the_transformers_pipeline(folders, name, shape):
    rng = np.random.default_rng(sum(shape))
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    model, metadata = load_depth_model(folders[name])
    reference = _pipeline_disparity(folders[name], image, metadata["depth_type"] == "metric")
    (ours,) = predict_disparity(model, [image], device="cpu", amp="fp32")
    assert ours.shape == shape and (reference > 0).mean() > 0.05  # not blank
    assert _relative_difference(ours, reference) <= 1e-3


def test_released_v2_processor_runs_a_landscape_photo_at_518_by_686(folders):
    model, metadata = load_depth_model(folders["da"])
    assert model.working_size(480, 640) == (518, 686)  # the side nearest 518 becomes 518
    assert model.working_size(640, 480) == (686, 518)
    assert metadata["processing"]["resample"] == "bicubic"


def test_a_6000_by_4000_photograph_matches_too(folders):
    image = np.random.default_rng(3).integers(0, 256, (4000, 6000, 3), dtype=np.uint8)
    model, _ = load_depth_model(folders["dpt_square"])
    reference = _pipeline_disparity(folders["dpt_square"], image, metric=False)
    (ours,) = predict_disparity(model, [image], device="cpu", amp="fp32")
    assert _relative_difference(ours, reference) <= 1e-3


def test_batching_images_of_several_sizes_changes_no_label(folders):
    model, _ = load_depth_model(folders["da"])
    rng = np.random.default_rng(4)
    shapes = [(480, 640), (60, 80), (481, 641), (90, 50), (60, 80)]
    images = [rng.integers(0, 256, (*s, 3), dtype=np.uint8) for s in shapes]
    batched = predict_disparity(model, images, batch_size=4, device="cpu", amp="fp32")
    for image, label in zip(images, batched):
        (alone,) = predict_disparity(model, [image], batch_size=1, device="cpu", amp="fp32")
        # Equal up to float summation order (batched matrix products).
        assert np.abs(label - alone).max() <= 1e-4 * np.abs(alone).max()


def test_a_shortest_edge_size_brings_the_nearest_side_to_it(tmp_path):
    folder = save_tiny_depth_anything(tmp_path / "edge", processor=False)
    (folder / "preprocessor_config.json").write_text(
        json.dumps({"size": {"shortest_edge": 56}, "keep_aspect_ratio": True,
                    "ensure_multiple_of": 14, "image_processor_type": "DPTImageProcessor"})
    )  # fmt: skip
    model, _ = load_depth_model(folder)
    assert model.working_size(60, 80) == (56, 70) and model.working_size(80, 60) == (70, 56)
