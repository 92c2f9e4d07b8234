import numpy as np
import pydantic
import pytest
import torch

from depth_core.data.augment import (
    AugmentConfig,
    ColorJitter,
    Compose,
    GaussianBlur,
    HorizontalFlip,
    RandomResizedCrop,
    build_augment,
    gaussian_blur,
)


def _sample(height=12, width=16, seed=None):
    cols = torch.arange(width, dtype=torch.float32).expand(height, width)
    image = torch.stack(
        [
            cols / (width - 1),
            torch.rand(height, width, generator=torch.Generator().manual_seed(0)),
            torch.full((height, width), 0.5),
        ]
    )
    disparity = 1.0 + cols.clone()  # disparity encodes the column, like image channel 0
    mask = torch.ones(height, width, dtype=torch.bool)
    mask[::3, ::2] = False
    disparity[~mask] = 0.0
    sample = {"image": image, "disparity": disparity, "mask": mask, "pseudo": False, "id": "x"}
    if seed is not None:
        sample["seed"] = seed
    return sample


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_config_forbids_unknown_keys_and_bad_ranges():
    with pytest.raises(pydantic.ValidationError):
        AugmentConfig(hflip=0.5)
    with pytest.raises(pydantic.ValidationError, match="crop_scale"):
        AugmentConfig(crop_scale=(0.8, 0.5))
    with pytest.raises(pydantic.ValidationError):
        AugmentConfig(hflip_prob=1.5)
    strong = AugmentConfig.strong(size=(8, 8))
    assert strong.jitter_prob > 0 and strong.blur_prob > 0 and strong.size == (8, 8)


def test_flip_moves_image_disparity_and_mask_together():
    sample = _sample()
    flipped = HorizontalFlip(p=1.0)(sample, _rng())
    assert torch.equal(flipped["image"], sample["image"].flip(-1))
    assert torch.equal(flipped["disparity"], sample["disparity"].flip(-1))
    assert torch.equal(flipped["mask"], sample["mask"].flip(-1))
    assert torch.equal(HorizontalFlip(p=1.0)(flipped, _rng())["disparity"], sample["disparity"])
    assert HorizontalFlip(p=0.0)(sample, _rng()) is sample


def test_crop_keeps_alignment_aspect_and_mask_safety():
    sample = _sample(height=12, width=24)
    crop = RandomResizedCrop(size=(6, 6), scale=(0.3, 1.0), p=1.0)
    for seed in range(20):
        out = crop(sample, _rng(seed))
        assert (
            out["image"].shape == (3, 6, 6)
            and out["disparity"].shape == (6, 6)
            and out["mask"].shape == (6, 6)
        )
        assert out["image"].min() >= 0 and out["image"].max() <= 1
        mask = out["mask"]
        assert (out["disparity"][~mask] == 0).all()
        # nearest resampling: only values that existed on valid pixels, never blends with invalid 0
        assert set(out["disparity"][mask].tolist()) <= set(range(1, 25))
        column_from_image = out["image"][0] * 23 + 1
        assert torch.allclose(column_from_image[mask], out["disparity"][mask], atol=1.01)
    centred = RandomResizedCrop(size=(6, 6), p=0.0)(sample, _rng())
    # no random crop: the centred square of a 12x24 image spans columns 6..17 (disparity 7..18)
    assert centred["disparity"][1].tolist() == [8.0, 10.0, 12.0, 14.0, 16.0, 18.0]


def test_photometric_transforms_never_touch_depth():
    sample = _sample()
    for transform in (ColorJitter(0.4, 0.4, 0.4, 0.1, p=1.0), GaussianBlur((1.0, 2.0), p=1.0)):
        out = transform(sample, _rng(3))
        assert out["disparity"] is sample["disparity"] and out["mask"] is sample["mask"]
        assert not torch.equal(out["image"], sample["image"])
        assert out["image"].min() >= 0 and out["image"].max() <= 1


def test_jitter_hue_and_saturation_leave_grey_grey():
    grey = {"image": torch.full((3, 4, 4), 0.3)}
    out = ColorJitter(hue=0.4, saturation=0.5, p=1.0)(grey, _rng(1))["image"]
    assert torch.allclose(out, grey["image"], atol=1e-5)
    colour = {"image": torch.tensor([0.8, 0.2, 0.1]).view(3, 1, 1).expand(3, 4, 4).clone()}
    shifted = ColorJitter(hue=0.5, p=1.0)(colour, _rng(2))["image"]
    assert not torch.allclose(shifted, colour["image"], atol=1e-2)


def test_blur_keeps_constants_and_smooths_noise():
    constant = torch.full((3, 10, 10), 0.7)
    assert torch.allclose(gaussian_blur(constant, 1.5), constant, atol=1e-6)
    noise = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    blurred = gaussian_blur(noise, 2.0)
    assert blurred.shape == noise.shape and blurred.std() < noise.std() / 3
    assert abs(blurred.mean() - noise.mean()) < 0.02


def test_compose_is_reproducible_from_the_sample_seed():
    pipeline = build_augment(AugmentConfig.strong(size=(8, 10), crop_prob=1.0))
    a = pipeline(_sample(seed=123))
    b = build_augment(AugmentConfig.strong(size=(8, 10), crop_prob=1.0))(_sample(seed=123))
    c = pipeline(_sample(seed=124))
    assert a["image"].shape == (3, 8, 10)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["disparity"], b["disparity"])
    assert not torch.equal(a["image"], c["image"])
    # no seed in the sample: the pipeline's own generator, reproducible per pipeline seed
    first = Compose([ColorJitter(brightness=0.5, p=1.0)], seed=7)
    second = Compose([ColorJitter(brightness=0.5, p=1.0)], seed=7)
    base = _sample()
    assert torch.equal(first(base)["image"], second(base)["image"])


def test_default_config_only_flips():
    pipeline = build_augment(AugmentConfig())
    assert [type(t).__name__ for t in pipeline.transforms] == ["HorizontalFlip"]
    flips = sum(
        torch.equal(pipeline(_sample(seed=s))["disparity"], _sample()["disparity"].flip(-1))
        for s in range(200)
    )
    assert 70 < flips < 130
