"""The renderer's public API: determinism, formats, exact depth on hand-built scenes, sky,
occlusion, shadows, camera effects, domains and configuration errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from depth_core.data.shards import build_sharded, list_shards, read_shard
from depth_core.synth.camera_effects import CameraEffectsConfig, sample_effects
from depth_core.synth.render import (
    RenderConfig,
    ShardRenderer,
    render_batch,
    render_scene,
    render_shard,
    shard_seed,
)
from depth_core.synth.scenes import (
    FAR,
    Camera,
    Environment,
    Lighting,
    Material,
    Primitive,
    Scene,
    SceneStatistics,
    sample_scene,
)
from depth_core.synth.textures import build_texture_bank

WHITE = Material(color_b=(0.7, 0.7, 0.7))
SMALL = {"height": 32, "width": 32, "chunk_size": 8}


def _open_ground(sun=(0.0, 1.0, 0.0)) -> Environment:
    return Environment(
        lower=np.array([-FAR, 0.0, -FAR], np.float32),
        upper=np.array([FAR, FAR, FAR], np.float32),
        open_faces=(True, True, True, False, True, True),
        materials=(WHITE,) * 6,
    )


def _sun(direction=(0.0, 1.0, 0.0)) -> Lighting:
    d = np.asarray(direction, np.float32)
    return Lighting(
        color=(3.0, 3.0, 3.0), sun_direction=d / np.linalg.norm(d), ambient_sky=(0.2, 0.2, 0.2)
    )


def _project(camera: Camera, point, height: int, width: int) -> tuple[int, int]:
    """Pixel (row, col) that sees a world point."""
    fx, fy, cx, cy = camera.intrinsics(height, width)
    right, up, forward = camera.basis()
    rel = np.asarray(point, np.float32) - camera.position
    z = rel @ forward
    return math.floor(cy - fy * (rel @ up) / z), math.floor(cx + fx * (rel @ right) / z)


# --------------------------------------------------------------------------- random batches


def test_same_seed_gives_identical_bytes_and_other_seeds_differ():
    config = RenderConfig(**SMALL)
    a = render_batch(config, seed=11, count=6)
    b = render_batch(config, seed=11, count=6)
    c = render_batch(config, seed=12, count=6)
    for key in ("image", "depth", "mask"):
        assert a[key].tobytes() == b[key].tobytes()
    assert a["id"] == b["id"]
    assert a["image"].tobytes() != c["image"].tobytes()
    assert a["depth"].tobytes() != c["depth"].tobytes()


def test_images_do_not_depend_on_chunking_or_count():
    small_chunks = render_batch(RenderConfig(**{**SMALL, "chunk_size": 2}), seed=5, count=5)
    one_chunk = render_batch(RenderConfig(**{**SMALL, "chunk_size": 16}), seed=5, count=3)
    assert small_chunks["image"][:3].tobytes() == one_chunk["image"].tobytes()
    assert small_chunks["depth"][:3].tobytes() == one_chunk["depth"].tobytes()


@pytest.mark.parametrize("domain", ["synthetic", "target"])
def test_batch_shapes_dtypes_and_value_ranges(domain):
    out = render_batch(
        RenderConfig(domain=domain, height=24, width=40, chunk_size=4), seed=3, count=5
    )
    assert out["image"].shape == (5, 24, 40, 3) and out["image"].dtype == np.uint8
    assert out["depth"].shape == (5, 24, 40) and out["depth"].dtype == np.float32
    assert out["mask"].shape == (5, 24, 40) and out["mask"].dtype == bool
    assert len(out["id"]) == 5 == len(set(out["id"]))
    depth, mask = out["depth"], out["mask"]
    assert np.isfinite(depth).all()
    assert (depth[~mask] == 0).all() and (depth[mask] > 0).all()
    assert depth.max() <= RenderConfig().max_depth
    assert mask.mean() > 0.5  # most of every picture is geometry, not sky
    assert out["image"].std() > 10  # not blank


def test_thread_setting_is_restored_and_does_not_change_results():
    before = torch.get_num_threads()
    one = render_batch(RenderConfig(**SMALL, threads=1), seed=9, count=3)
    two = render_batch(RenderConfig(**SMALL, threads=2), seed=9, count=3)
    assert torch.get_num_threads() == before
    assert one["image"].tobytes() == two["image"].tobytes()
    assert one["depth"].tobytes() == two["depth"].tobytes()


def test_zero_count_and_bad_arguments():
    config = RenderConfig(**SMALL)
    empty = render_batch(config, seed=0, count=0)
    assert empty["image"].shape == (0, 32, 32, 3) and empty["id"] == []
    with pytest.raises(ValueError, match="seed"):
        render_batch(config, seed=-1, count=1)
    with pytest.raises(ValueError, match="count"):
        render_batch(config, seed=0, count=-2)


def test_shards_are_independent_reproducible_and_uniquely_named():
    config = RenderConfig(**SMALL)
    first = render_shard(config, base_seed=7, shard_index=0, count=2)
    again = render_shard(config, base_seed=7, shard_index=0, count=2)
    second = render_shard(config, base_seed=7, shard_index=1, count=2)
    assert first["image"].tobytes() == again["image"].tobytes()
    assert first["image"].tobytes() != second["image"].tobytes()
    assert not set(first["id"]) & set(second["id"])
    assert shard_seed(7, 0) != shard_seed(7, 1) != shard_seed(8, 1)


def test_sampled_scenes_respect_the_object_budget_and_layout_mix():
    bank = build_texture_bank("synthetic")
    stats = SceneStatistics(min_objects=4, max_objects=9)
    layouts = []
    for i in range(40):
        scene, _ = sample_scene(np.random.default_rng(i), stats, bank)
        assert 4 <= len(scene.primitives) <= 9
        layouts.append(scene.layout)
    assert {"outdoor", "indoor", "tabletop"} <= set(layouts)


def test_target_domain_differs_statistically_from_synthetic():
    def fine_detail(domain):
        """Per image: median absolute Laplacian, high for sensor noise, JPEG and photo texture."""
        config = RenderConfig(domain=domain, height=48, width=48, chunk_size=16)
        x = render_batch(config, seed=2, count=32)["image"].astype(np.float32)
        laplacian = (
            4 * x[:, 1:-1, 1:-1]
            - x[:, :-2, 1:-1]
            - x[:, 2:, 1:-1]
            - x[:, 1:-1, :-2]
            - x[:, 1:-1, 2:]
        )
        return np.median(np.abs(laplacian), axis=(1, 2, 3))

    synthetic, target = fine_detail("synthetic"), fine_detail("target")
    welch_t = (target.mean() - synthetic.mean()) / math.sqrt(
        target.var() / 32 + synthetic.var() / 32 + 1e-9
    )
    assert welch_t > 4.0


# --------------------------------------------------------------------------- hand-built scenes


def test_ground_plane_depth_matches_the_closed_form():
    height, width, cam_height, pitch = 40, 48, 1.5, -0.3
    camera = Camera(
        position=np.array([0.0, cam_height, 0.0], np.float32), pitch=pitch, hfov=math.radians(70)
    )
    scene = Scene(_open_ground(), [], _sun())
    out = render_scene([scene], [camera], height, width)
    _, fy, _, cy = camera.intrinsics(height, width)
    rows = (np.arange(height) + 0.5 - cy) / fy  # image-down offset of each row, per unit z
    # a ray through normalised row offset v meets y = 0 at z-depth h / (sin(-pitch) + v cos(pitch))
    denominator = math.sin(-pitch) + rows * math.cos(pitch)
    expected = np.where(
        denominator > 0, cam_height / np.where(denominator > 0, denominator, 1.0), 0.0
    )
    ground = denominator > 1e-3
    depth = out["depth"][0]
    np.testing.assert_allclose(
        depth[ground], np.broadcast_to(expected[:, None], depth.shape)[ground], rtol=1e-4
    )
    # every column sees the same depth on a row (no roll), and sky above the horizon
    assert np.allclose(depth[ground], np.broadcast_to(depth[:, :1], depth.shape)[ground], rtol=1e-4)
    assert not out["mask"][0][denominator < 0].any()
    assert (out["depth"][0][denominator < 0] == 0).all()
    assert out["mask"][0][ground].all()


def test_sphere_straight_ahead_has_the_expected_centre_depth():
    size, distance, radius = 33, 6.0, 1.25  # odd size: the centre pixel lies on the optical axis
    camera = Camera(position=np.array([0.0, 2.0, 0.0], np.float32), hfov=math.radians(50))
    sphere = Primitive(
        "ellipsoid",
        np.array([0.0, 2.0, distance], np.float32),
        np.full(3, radius, np.float32),
        material=WHITE,
    )
    out = render_scene([Scene(_open_ground(), [sphere], _sun())], [camera], size, size)
    assert out["depth"][0, size // 2, size // 2] == pytest.approx(distance - radius, rel=1e-5)
    # off-centre pixels on the sphere are farther (z-depth grows towards the silhouette)
    assert out["depth"][0, size // 2, size // 2 + 3] > distance - radius


def test_nearer_object_occludes_the_farther_one():
    size = 33
    camera = Camera(position=np.array([0.0, 1.0, 0.0], np.float32), hfov=math.radians(40))
    far_box = Primitive(
        "box",
        np.array([0.0, 1.0, 10.0], np.float32),
        np.array([5.0, 2.0, 0.5], np.float32),
        material=WHITE,
    )
    near_ball = Primitive(
        "ellipsoid",
        np.array([0.0, 1.0, 4.0], np.float32),
        np.full(3, 0.5, np.float32),
        material=WHITE,
    )
    for order in ([far_box, near_ball], [near_ball, far_box]):
        out = render_scene([Scene(_open_ground(), order, _sun())], [camera], size, size)
        assert out["depth"][0, size // 2, size // 2] == pytest.approx(3.5, rel=1e-5)
        assert out["depth"][0, size // 2, 2] == pytest.approx(
            9.5, rel=1e-5
        )  # box face beside the ball


def test_rotated_box_in_a_room_and_room_faces():
    # a closed room: every pixel is valid; looking at the far wall straight on gives its distance
    room = Environment(
        lower=np.array([-3.0, 0.0, -2.0], np.float32),
        upper=np.array([3.0, 2.5, 4.0], np.float32),
        open_faces=(False,) * 6,
        materials=(WHITE,) * 6,
    )
    lamp = Lighting(color=(2.0, 2.0, 2.0), position=np.array([0.0, 2.2, 1.0], np.float32))
    camera = Camera(position=np.array([0.0, 1.25, 0.0], np.float32), hfov=math.radians(60))
    out = render_scene([Scene(room, [], lamp)], [camera], 33, 33)
    assert out["mask"].all()
    assert out["depth"][0, 16, 16] == pytest.approx(4.0, rel=1e-5)


def test_sky_is_invalid_and_far_surfaces_beyond_max_depth_too():
    camera = Camera(position=np.array([0.0, 1.5, 0.0], np.float32), pitch=0.05)
    out = render_scene([Scene(_open_ground(), [], _sun())], [camera], 32, 32, max_depth=50.0)
    depth, mask = out["depth"][0], out["mask"][0]
    assert not mask[0].any() and (depth[0] == 0).all()  # top row: sky
    assert mask[-1].all()  # bottom row: near ground
    assert depth.max() <= 50.0


def test_a_point_occluded_from_the_sun_is_darker():
    height = width = 48
    sun_direction = (1.0, 1.0, 0.0)  # the box's shadow falls 2 m towards -x
    box = Primitive(
        "box",
        np.array([0.0, 2.0, 0.0], np.float32),
        np.array([0.5, 0.1, 0.5], np.float32),
        material=WHITE,
    )
    camera = Camera(
        position=np.array([0.0, 9.0, 0.0], np.float32), pitch=-math.pi / 2, hfov=math.radians(60)
    )
    scenes = [Scene(_open_ground(), [box], _sun(sun_direction))]
    image = render_scene(scenes, [camera], height, width)["image"][0].astype(np.float32).mean(-1)
    shadow = _project(camera, (-2.0, 0.0, 0.0), height, width)
    lit = _project(camera, (2.5, 0.0, 0.0), height, width)
    assert image[shadow] < 0.6 * image[lit]
    # without the box the same ground point is lit
    bare = render_scene([Scene(_open_ground(), [], _sun(sun_direction))], [camera], height, width)[
        "image"
    ][0]
    assert bare.astype(np.float32).mean(-1)[shadow] == pytest.approx(image[lit], abs=3)


def test_camera_effects_change_the_image_but_never_the_depth():
    bank = build_texture_bank("synthetic")
    scene, camera = sample_scene(np.random.default_rng(4), SceneStatistics(), bank)
    clean = render_scene([scene], [camera], 32, 32, bank)
    draw = sample_effects(
        np.random.default_rng(0), CameraEffectsConfig(jpeg_probability=1.0, blur_probability=1.0)
    )
    noisy = render_scene([scene], [camera], 32, 32, bank, effects=[draw])
    assert noisy["depth"].tobytes() == clean["depth"].tobytes()
    assert noisy["mask"].tobytes() == clean["mask"].tobytes()
    assert np.abs(noisy["image"].astype(int) - clean["image"].astype(int)).mean() > 1.0


def test_render_scene_rejects_malformed_scenes():
    camera = Camera(position=np.array([0.0, 1.0, 0.0], np.float32))
    bad = Primitive("cone", np.zeros(3, np.float32), np.ones(3, np.float32))
    with pytest.raises(ValueError, match="primitive 0: unknown kind 'cone'"):
        render_scene([Scene(_open_ground(), [bad], _sun())], [camera], 16, 16)
    flat = Primitive("box", np.zeros(3, np.float32), np.array([1.0, 0.0, 1.0], np.float32))
    with pytest.raises(ValueError, match="sizes must be positive"):
        render_scene([Scene(_open_ground(), [flat], _sun())], [camera], 16, 16)
    with pytest.raises(ValueError, match="as many cameras as scenes"):
        render_scene([Scene(_open_ground(), [], _sun())], [], 16, 16)


# --------------------------------------------------------------------------- configuration


def test_config_rejects_unknown_keys_and_inconsistent_values():
    with pytest.raises(ValidationError, match="colour"):
        RenderConfig(colour=True)
    with pytest.raises(ValidationError, match="min_objects"):
        RenderConfig(min_objects=10, max_objects=5)
    with pytest.raises(ValidationError, match="indoor_fraction"):
        RenderConfig(indoor_fraction=0.8, tabletop_fraction=0.5)
    with pytest.raises(ValidationError, match="photo_fraction"):
        RenderConfig(domain="synthetic", photo_fraction=0.5)
    with pytest.raises(ValidationError, match="fov_deg"):
        RenderConfig(fov_deg=(80.0, 30.0))
    with pytest.raises(ValidationError, match="domain"):
        RenderConfig(domain="real")


def test_domain_presets_fill_unset_fields():
    synthetic, target = RenderConfig(), RenderConfig(domain="target")
    assert not synthetic.effects_enabled and target.effects_enabled
    assert target.statistics().photo_fraction > 0 == synthetic.statistics().photo_fraction
    assert RenderConfig(domain="target", camera_effects=False).effects_enabled is False
    assert RenderConfig(indoor_fraction=0.1).statistics().indoor_fraction == 0.1


def test_worker_processes_write_the_same_dataset_as_one_process(tmp_path):
    config = RenderConfig(height=16, width=20, max_objects=4, texture_size=16, chunk_size=4)
    datasets = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        stats = build_sharded(
            out, 7, 3, ShardRenderer(config, base_seed=5), progress=False, workers=workers
        )
        assert (stats.written, stats.total) == (3, 3)
        datasets[workers] = [read_shard(p) for p in list_shards(out)]
    for one, two in zip(datasets[1], datasets[2], strict=True):
        assert sorted(one) == ["depth", "id", "image", "mask"]
        for key in one:
            np.testing.assert_array_equal(one[key], two[key])
    images_only = ShardRenderer(config, base_seed=5, keep_depth=False)(0, 0, 2)
    assert sorted(images_only) == ["id", "image"]
    with pytest.raises(ValueError, match="workers"):
        build_sharded(tmp_path / "bad", 7, 3, ShardRenderer(config, 5), workers=0)
