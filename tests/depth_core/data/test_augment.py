"""Augmentations: the one colour jitter and blur (batched), and per-sample geometry."""

import pydantic
import pytest
import torch

from depth_core.data.augment import (
    AugmentConfig,
    PhotometricConfig,
    build_augment,
    color_jitter,
    gaussian_blur,
    horizontal_flip,
    resized_crop,
)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _images(n=6, h=32, w=40, seed=0):
    return torch.rand(n, 3, h, w, generator=_gen(seed))


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


STRONG = {
    "jitter_prob": 0.8,
    "brightness": 0.4,
    "contrast": 0.4,
    "saturation": 0.4,
    "hue": 0.1,
    "blur_prob": 0.5,
}


def test_config_forbids_unknown_keys_and_bad_ranges():
    with pytest.raises(pydantic.ValidationError):
        AugmentConfig(hflip=0.5)
    with pytest.raises(pydantic.ValidationError, match="crop_scale"):
        AugmentConfig(crop_scale=(0.8, 0.5))
    with pytest.raises(pydantic.ValidationError, match="blur_sigma"):
        AugmentConfig(blur_sigma=(2.0, 1.0))
    with pytest.raises(pydantic.ValidationError):
        AugmentConfig(hflip_prob=1.5)


def test_flip_moves_image_disparity_and_mask_together():
    sample = _sample()
    flipped = horizontal_flip(sample)
    for key in ("image", "disparity", "mask"):
        assert torch.equal(flipped[key], sample[key].flip(-1)), key
    assert torch.equal(horizontal_flip(flipped)["disparity"], sample["disparity"])


def test_crop_keeps_alignment_aspect_and_mask_safety():
    sample = _sample(height=12, width=24)
    augment = build_augment(
        AugmentConfig(size=(6, 6), crop_prob=1.0, crop_scale=(0.3, 1.0), hflip_prob=0)
    )
    for seed in range(20):
        out = augment({**sample, "seed": seed})
        assert out["image"].shape == (3, 6, 6)
        assert out["disparity"].shape == (6, 6) and out["mask"].shape == (6, 6)
        assert out["image"].min() >= 0 and out["image"].max() <= 1
        mask = out["mask"]
        assert (out["disparity"][~mask] == 0).all()
        # nearest resampling: only values that existed on valid pixels, never blends with invalid 0
        assert set(out["disparity"][mask].tolist()) <= set(range(1, 25))
        column_from_image = out["image"][0] * 23 + 1
        assert torch.allclose(column_from_image[mask], out["disparity"][mask], atol=1.01)
    centred = resized_crop(sample, (0, 6, 12, 12), (6, 6))
    # the centred square of a 12x24 image spans columns 6..17 (disparity 7..18), pixel centres
    assert centred["disparity"][1].tolist() == [8.0, 10.0, 12.0, 14.0, 16.0, 18.0]
    no_crop = build_augment(AugmentConfig(size=(6, 6), hflip_prob=0))({**sample, "seed": 0})
    assert torch.equal(no_crop["disparity"], centred["disparity"]), "size alone: centred window"


def test_photometric_augmentations_never_touch_depth():
    sample = _sample(seed=3)
    for config in (
        AugmentConfig(hflip_prob=0, **STRONG),
        AugmentConfig(hflip_prob=0, blur_prob=1.0, blur_sigma=(1.0, 2.0)),
    ):
        out = build_augment(config)(sample)
        assert out["disparity"] is sample["disparity"] and out["mask"] is sample["mask"]
        assert not torch.equal(out["image"], sample["image"])
        assert out["image"].min() >= 0 and out["image"].max() <= 1


def test_jitter_hue_and_saturation_leave_grey_grey():
    grey = torch.full((1, 3, 4, 4), 0.3)
    out = color_jitter(grey, PhotometricConfig(jitter_prob=1.0, hue=0.4, saturation=0.5), _gen(1))
    assert torch.allclose(out, grey, atol=1e-5)
    colour = torch.tensor([0.8, 0.2, 0.1]).view(1, 3, 1, 1).expand(1, 3, 4, 4).clone()
    shifted = color_jitter(colour, PhotometricConfig(jitter_prob=1.0, hue=0.5), _gen(2))
    assert not torch.allclose(shifted, colour, atol=1e-2)


def test_hue_free_jitter_keeps_its_random_stream():
    """Adding the hue knob must not change what hue-free runs draw (resume, reproducibility)."""
    images = _images()
    config = PhotometricConfig(jitter_prob=0.7, brightness=0.5, contrast=0.5, saturation=0.5)
    generator = _gen(4)
    color_jitter(images, config, generator)
    expected = _gen(4)
    for _ in range(4):
        torch.rand(len(images), generator=expected)
    assert torch.equal(torch.rand(3, generator=generator), torch.rand(3, generator=expected))


def test_compose_is_reproducible_from_the_sample_seed():
    config = AugmentConfig(size=(8, 10), crop_prob=1.0, **STRONG)
    a = build_augment(config)(_sample(seed=123))
    b = build_augment(config)(_sample(seed=123))
    c = build_augment(config)(_sample(seed=124))
    assert a["image"].shape == (3, 8, 10)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["disparity"], b["disparity"])
    assert not torch.equal(a["image"], c["image"])
    # no seed in the sample: the pipeline's own generator, reproducible per pipeline seed
    first = build_augment(AugmentConfig(jitter_prob=1.0, brightness=0.5), seed=7)
    second = build_augment(AugmentConfig(jitter_prob=1.0, brightness=0.5), seed=7)
    base = _sample()
    assert torch.equal(first(base)["image"], second(base)["image"])


def test_default_config_only_flips():
    augment = build_augment(AugmentConfig())
    flips = 0
    for s in range(200):
        out = augment(_sample(seed=s))
        flipped = torch.equal(out["disparity"], _sample()["disparity"].flip(-1))
        assert flipped or torch.equal(out["image"], _sample()["image"])
        flips += flipped
    assert 70 < flips < 130


def test_jitter_is_per_image_and_in_range():
    images = _images()
    config = PhotometricConfig(jitter_prob=0.5, brightness=0.5, contrast=0.5, saturation=0.5)
    out = color_jitter(images, config, _gen(1))
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1
    changed = (out - images).abs().flatten(1).amax(1) > 1e-6
    assert 0 < changed.sum() < len(images)  # p=0.5 over 6 images with this seed: some, not all


def test_jitter_p0_is_identity_and_p1_changes_all():
    images = _images()
    assert torch.allclose(
        color_jitter(images, PhotometricConfig(jitter_prob=0.0), _gen()), images, atol=1e-6
    )
    out = color_jitter(
        images,
        PhotometricConfig(jitter_prob=1.0, brightness=0.5, contrast=0.5, saturation=0.5),
        _gen(),
    )
    assert ((out - images).abs().flatten(1).amax(1) > 1e-3).all()


def test_blur_keeps_mean_and_lowers_variation():
    images = _images()
    out = gaussian_blur(images, PhotometricConfig(blur_prob=1.0, blur_sigma=(1.5, 2.0)), _gen())
    assert out.shape == images.shape
    assert torch.allclose(out.mean(dim=(2, 3)), images.mean(dim=(2, 3)), atol=0.02)
    tv = lambda x: (x[..., 1:] - x[..., :-1]).abs().mean(dim=(1, 2, 3))
    assert (tv(out) < 0.5 * tv(images)).all()
    same = gaussian_blur(images, PhotometricConfig(blur_prob=0.0), _gen())
    assert torch.equal(same, images)


def test_blur_matches_a_single_image_reference():
    image = _images(n=1)
    config = PhotometricConfig(blur_prob=1.0, blur_sigma=(1.0, 1.0))
    out = gaussian_blur(image, config, _gen())
    x = torch.arange(-3, 4, dtype=torch.float32)
    k = torch.exp(-0.5 * x**2)
    k = k / k.sum()
    ref = torch.nn.functional.pad(image, (3, 3, 3, 3), mode="reflect")
    ref = torch.nn.functional.conv2d(ref, (k[:, None] * k[None, :]).expand(3, 1, 7, 7), groups=3)
    # The separable kernel radius is ceil(3 * sigma_max) = 3 here.
    assert torch.allclose(out, ref, atol=1e-5)
