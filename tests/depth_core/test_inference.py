import numpy as np
import pytest
import torch

from depth_core.inference import iterate_predictions, predict_disparity
from depth_core.models.depth_model import build_model
from depth_core.models.input_size import inference_size
from tests.helpers import TINY_VIT


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(TINY_VIT)


def _images(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


def test_inference_size_keeps_aspect_and_rounds_to_the_stride():
    assert inference_size(480, 640, 128, (16, 16)) == (96, 128)
    assert inference_size(640, 480, 128, (16, 16)) == (128, 96)
    assert inference_size(100, 72, 32, (16, 16)) == (32, 16)
    assert inference_size(10, 1000, 64, (8, 8)) == (8, 64)  # never below one stride
    assert inference_size(7, 9, 128, (32, 32)) == (96, 128)  # small images are upsampled


def test_predictions_come_back_at_original_sizes_in_order(model):
    sizes = [(50, 37), (37, 50), (50, 37), (21, 64), (50, 37)]
    images = _images(sizes)
    disparities = predict_disparity(model, images, batch_size=2)
    assert [d.shape for d in disparities] == sizes
    assert all(
        d.dtype == np.float32 and (d >= 0).all() and np.isfinite(d).all() for d in disparities
    )
    # Batch composition does not change a prediction.
    singles = predict_disparity(model, images, batch_size=1)
    for batched, single in zip(disparities, singles):
        np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-5)
    # Different images give different maps.
    assert not np.allclose(disparities[0], disparities[2])


def test_prediction_matches_running_the_model_at_inference_size(model):
    image = _images([(32, 32)])[0]  # already at img_size: no resizing either way
    expected = model.eval()(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)[0]
    np.testing.assert_allclose(
        predict_disparity(model, [image])[0], expected.detach().numpy(), rtol=1e-5
    )


def test_flip_tta_of_a_mirror_symmetric_image_is_mirror_symmetric(model):
    half = _images([(40, 28)], seed=3)[0]
    image = np.concatenate([half, half[:, ::-1]], axis=1)  # 40 x 56, symmetric about the centre
    plain = predict_disparity(model, [image])[0]
    tta = predict_disparity(model, [image], flip_tta=True)[0]
    assert not np.allclose(plain, plain[:, ::-1], atol=1e-4), "the model alone is not symmetric"
    np.testing.assert_allclose(tta, tta[:, ::-1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tta, 0.5 * (plain + plain[:, ::-1]), rtol=1e-4, atol=1e-6)


def test_streaming_restores_training_mode_and_accepts_generators(model):
    model.train()
    images = _images([(30, 40)] * 3)
    stream = iterate_predictions(model, (im for im in images), batch_size=2, amp="bf16")
    first = next(stream)
    assert first.shape == (30, 40) and first.dtype == np.float32
    assert not model.training
    assert len(list(stream)) == 2
    assert model.training


def test_bad_images_are_named_by_index(model):
    images = _images([(20, 20), (20, 20)])
    images[1] = images[1].astype(np.float32)
    with pytest.raises(ValueError, match=r"images\[1\].*uint8"):
        predict_disparity(model, images)
    with pytest.raises(ValueError, match="batch_size"):
        predict_disparity(model, images[:1], batch_size=0)


def test_multi_scale_tta_averages_predictions_at_resized_inputs(model):
    image = _images([(32, 32)], seed=5)[0]  # at img_size: the 1.0 pass sees the image as is
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        model.eval()
        small = torch.nn.functional.interpolate(
            x, size=(16, 16), mode="bilinear", antialias=True, align_corners=False
        )
        small_pred = torch.nn.functional.interpolate(
            model(small)[:, None], size=(32, 32), mode="bilinear", align_corners=False
        )[0, 0]
        expected = 0.5 * (model(x)[0] + small_pred)
    got = predict_disparity(model, [image], scales=(0.5, 1.0))[0]
    assert got.shape == (32, 32)
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-4, atol=1e-6)
    assert not np.allclose(got, predict_disparity(model, [image])[0], atol=1e-4)
    np.testing.assert_array_equal(
        predict_disparity(model, [image], scales=[1.0])[0], predict_disparity(model, [image])[0]
    )


@pytest.mark.parametrize("scales", [(), (0.0,), (-1.0, 1.0), (5.0,)])
def test_bad_scales_are_refused(model, scales):
    with pytest.raises(ValueError, match="scales"):
        predict_disparity(model, _images([(32, 32)]), scales=scales)


def test_read_only_images_predict_without_a_warning(model):
    import warnings

    image = _images([(40, 30)])[0]
    image.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (pred,) = predict_disparity(model, [image], device="cpu")
    assert pred.shape == (40, 30) and pred.flags.writeable


def test_huge_images_are_reduced_in_uint8_before_becoming_floats(model):
    from depth_core.inference import REDUCE_HEADROOM, reduce_for_model

    small = _images([(40, 60)])[0]
    assert reduce_for_model(small, 32) is small  # within the headroom: untouched
    big = _images([(400, 600)])[0]
    reduced = reduce_for_model(big, 32)
    assert reduced.dtype == np.uint8 and max(reduced.shape[:2]) < 2 * REDUCE_HEADROOM * 32
    (pred,) = predict_disparity(model, [big], device="cpu")
    assert pred.shape == (400, 600) and pred.dtype == np.float32
    assert not torch.is_inference_mode_enabled()
