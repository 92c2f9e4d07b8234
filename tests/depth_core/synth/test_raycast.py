"""Ray-primitive intersection, environment exits and the conservativeness of bundle culling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from depth_core.synth import raycast
from depth_core.synth.scenes import random_rotation


def _rays(origins, directions):
    """(n, 3) numpy -> (n, 3, 1) tensors, the layout of the unit-shape kernels."""
    o = torch.tensor(np.asarray(origins, np.float32)).unsqueeze(-1)
    d = torch.tensor(np.asarray(directions, np.float32))
    d = (d / d.norm(dim=-1, keepdim=True)).unsqueeze(-1)
    return o, d


@pytest.mark.parametrize("kind", [raycast.KIND_ELLIPSOID, raycast.KIND_BOX, raycast.KIND_CYLINDER])
def test_unit_shapes_are_entered_at_distance_one_along_an_axis(kind):
    # rays from x = -2 along +x hit every unit shape at x = -1 (t = 1) and leave at t = 3
    o, d = _rays([[-2.0, 0.0, 0.0], [-2.0, 0.3, 0.2]], [[1, 0, 0], [1, 0, 0]])
    near, far = raycast.unit_shape_interval(kind, o, d)
    assert near[0, 0] == pytest.approx(1.0, abs=1e-6)
    assert far[0, 0] == pytest.approx(3.0, abs=1e-6)
    assert near[1, 0] < raycast.MISS  # an off-centre ray still hits


@pytest.mark.parametrize("kind", [raycast.KIND_ELLIPSOID, raycast.KIND_BOX, raycast.KIND_CYLINDER])
def test_rays_that_pass_beside_a_unit_shape_miss(kind):
    o, d = _rays(
        [[-2.0, 1.5, 0.0], [-2.0, 0.0, 1.2], [-2.0, 0.0, 0.0]], [[1, 0, 0], [1, 0, 0], [-1, 0, 0]]
    )
    near, far = raycast.unit_shape_interval(kind, o, d)
    t = raycast.first_positive(near, far)
    assert (t[:2] >= raycast.MISS).all()
    assert t[2, 0] >= raycast.MISS  # pointing away


def test_cylinder_caps_and_box_corner_geometry():
    # down the cylinder axis: enters the top cap at y = 1
    o, d = _rays([[0.0, 3.0, 0.0]], [[0, -1, 0]])
    near, _ = raycast.unit_shape_interval(raycast.KIND_CYLINDER, o, d)
    assert near[0, 0] == pytest.approx(2.0, abs=1e-6)
    # the cube corner (1, 1, 1) along the diagonal from (2, 2, 2)
    o, d = _rays([[2.0, 2.0, 2.0]], [[-1, -1, -1]])
    near, _ = raycast.unit_shape_interval(raycast.KIND_BOX, o, d)
    assert near[0, 0] == pytest.approx(math.sqrt(3.0), abs=1e-5)
    # the cylinder's rim is round: the same diagonal ray into the cylinder enters later
    o, d = _rays([[2.0, 0.0, 2.0]], [[-1, 0, -1]])
    near, _ = raycast.unit_shape_interval(raycast.KIND_CYLINDER, o, d)
    assert near[0, 0] == pytest.approx(2.0 * math.sqrt(2.0) - 1.0, abs=1e-5)


def test_first_positive_uses_the_exit_for_rays_starting_inside():
    o, d = _rays([[0.0, 0.0, 0.0]], [[0, 0, 1]])
    near, far = raycast.unit_shape_interval(raycast.KIND_ELLIPSOID, o, d)
    assert raycast.first_positive(near, far)[0, 0] == pytest.approx(1.0, abs=1e-6)


def test_environment_exit_face_and_distance():
    origins = torch.tensor([[[0.0], [1.0], [0.0]]])  # inside a box [-2, 2] x [0, 3] x [-5, 5]
    dirs = torch.tensor(
        [
            [1.0, 0.0, 0.0],
            [-1.0, 0.0, 0.0],
            [0.0, 1.0, 0.0],
            [0.0, -1.0, 0.0],
            [0.0, 0.0, 1.0],
            [0.0, 0.0, -1.0],
        ]
    )
    lower, upper = torch.tensor([[-2.0, 0.0, -5.0]]), torch.tensor([[2.0, 3.0, 5.0]])
    hit = raycast.environment_hits(origins, dirs.t().unsqueeze(0), lower, upper)
    assert hit.face[0].tolist() == [0, 1, 2, 3, 4, 5]
    assert hit.t[0].tolist() == pytest.approx([2.0, 2.0, 2.0, 1.0, 5.0, 5.0])
    assert hit.face_mask(3)[0].tolist() == [0, 0, 0, 1, 0, 0]


def _random_prims(rng, batch, slots):
    kind = torch.tensor(rng.integers(0, 3, (batch, slots)))
    kind[:, -1] = -1  # an empty slot must never be hit
    center = torch.tensor(rng.uniform(-3, 3, (batch, slots, 3)), dtype=torch.float32)
    center[..., 2] += 8.0
    rotation = torch.tensor(
        np.stack([[random_rotation(rng) for _ in range(slots)] for _ in range(batch)])
    )
    size = torch.tensor(rng.uniform(0.2, 1.5, (batch, slots, 3)), dtype=torch.float32)
    return raycast.PrimitiveTensors(kind, center, rotation, size)


def _camera(batch, size):
    basis = torch.eye(3).expand(batch, 3, 3).contiguous()
    focal = torch.full((batch, 2), size * 0.8)
    center = torch.full((batch, 2), size / 2)
    return basis, focal, center


def test_bundle_culling_never_changes_closest_hits():
    rng = np.random.default_rng(0)
    batch, size = 3, 32
    prims = _random_prims(rng, batch, 9)
    basis, focal, center = _camera(batch, size)
    origin = torch.zeros(batch, 3)
    dirs, _ = raycast.camera_rays(basis, focal, center, size, size)
    bundles = raycast.camera_bundles(origin, basis, focal, center, size, size)
    culled = raycast.cone_overlap(bundles, prims)
    everything = (prims.kind >= 0).unsqueeze(-1).expand_as(culled)
    assert culled.float().mean() < 0.9 * everything.float().mean()  # culling does cull
    t1, k1 = raycast.closest_hits(origin.unsqueeze(-1), dirs, prims, culled)
    t2, k2 = raycast.closest_hits(origin.unsqueeze(-1), dirs, prims, everything)
    assert torch.equal(t1, t2) and torch.equal(k1, k2)
    assert (k1 >= 0).float().mean() > 0.1  # the scene is actually hit
    assert not (k1 == prims.slots - 1).any()  # the empty slot


def test_shadow_bundles_never_change_any_hits():
    rng = np.random.default_rng(1)
    batch, size = 2, 32
    prims = _random_prims(rng, batch, 8)
    # shadow-ray origins scattered on a plane below the primitives
    points = torch.tensor(rng.uniform(-4, 4, (batch, 3, size * size)), dtype=torch.float32)
    points[:, 1] = -3.0
    points[:, 2] += 8.0
    valid = torch.tensor(rng.random((batch, size * size)) < 0.8)
    sun = torch.nn.functional.normalize(torch.tensor([[0.3, 1.0, 0.2], [-0.5, 1.0, 0.0]]), dim=-1)
    far = torch.full((batch, size * size), raycast.MISS)
    everything = (
        (prims.kind >= 0).unsqueeze(-1).expand(batch, prims.slots, size * size // raycast.LANES)
    )
    beam = raycast.beam_overlap(raycast.beam_bundles(sun, points, valid), prims)
    hit_beam = raycast.any_hits(points, sun.unsqueeze(-1), far, prims, beam) * valid
    hit_all = raycast.any_hits(points, sun.unsqueeze(-1), far, prims, everything) * valid
    assert torch.equal(hit_beam, hit_all) and hit_all.sum() > 0

    lamp = torch.tensor([[0.0, 4.0, 8.0], [1.0, 5.0, 7.0]])
    to_lamp = lamp.unsqueeze(-1) - points
    dist = to_lamp.norm(dim=1)
    dirs = to_lamp / dist.unsqueeze(1)
    cone = raycast.cone_overlap(raycast.cone_bundles(lamp, points, valid), prims)
    hit_cone = raycast.any_hits(points, dirs, dist, prims, cone) * valid
    hit_all = raycast.any_hits(points, dirs, dist, prims, everything) * valid
    assert torch.equal(hit_cone, hit_all) and hit_all.sum() > 0


def test_any_hits_respects_the_segment_length():
    prims = raycast.PrimitiveTensors(
        torch.tensor([[raycast.KIND_ELLIPSOID]]),
        torch.tensor([[[0.0, 0.0, 5.0]]]),
        torch.eye(3).view(1, 1, 3, 3),
        torch.ones(1, 1, 3),
    )
    points = torch.zeros(1, 3, raycast.LANES)
    dirs = torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1)
    overlap = torch.ones(1, 1, 1, dtype=torch.bool)
    short = torch.full((1, raycast.LANES), 3.0)  # ends before the sphere (entry at t = 4)
    long = torch.full((1, raycast.LANES), 4.5)
    assert raycast.any_hits(points, dirs, short, prims, overlap).sum() == 0
    assert raycast.any_hits(points, dirs, long, prims, overlap).min() == 1


def test_closest_hit_prefers_the_nearer_and_breaks_ties_by_slot():
    kind = torch.tensor([[raycast.KIND_BOX, raycast.KIND_ELLIPSOID, raycast.KIND_ELLIPSOID]])
    center = torch.tensor([[[0.0, 0.0, 9.0], [0.0, 0.0, 5.0], [0.0, 0.0, 5.0]]])
    prims = raycast.PrimitiveTensors(
        kind, center, torch.eye(3).expand(1, 3, 3, 3), torch.ones(1, 3, 3)
    )
    dirs = torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1).expand(1, 3, raycast.LANES)
    overlap = torch.ones(1, 3, 1, dtype=torch.bool)
    t, slot = raycast.closest_hits(torch.zeros(1, 3, 1), dirs, prims, overlap)
    assert t[0, 0] == pytest.approx(4.0) and slot[0, 0] == 1


def test_primitive_surface_normals_point_outwards():
    rotation = (
        torch.tensor(random_rotation(np.random.default_rng(3))).view(1, 1, 3, 3).expand(1, 3, 3, 3)
    )
    kind = torch.tensor([[raycast.KIND_ELLIPSOID, raycast.KIND_BOX, raycast.KIND_CYLINDER]])
    center = torch.tensor([[[1.0, 2.0, 3.0]] * 3])
    size = torch.tensor([[[1.0, 1.0, 1.0], [0.5, 1.0, 2.0], [1.0, 2.0, 1.0]]])
    prims = raycast.PrimitiveTensors(kind, center, rotation.contiguous(), size)
    rot = rotation[0, 0]
    # sphere: a point on the surface; box: centre of the +y face; cylinder: centre of the top cap
    local = torch.tensor([[0.6, 0.0, 0.8], [0.0, 1.0, 0.0], [0.0, 2.0, 0.0]])
    points = (center[0] + local @ rot.t()).t()
    normal, _, fit, mean_size = raycast.primitive_surface(
        prims, torch.zeros(3, dtype=torch.long), torch.arange(3), points
    )
    expected = torch.stack([rot @ torch.tensor([0.6, 0.0, 0.8]), rot[:, 1], rot[:, 1]]).t()
    assert torch.allclose(normal, expected, atol=1e-5)
    assert torch.allclose(
        fit[:, 1:], torch.full((2, 2), 0.5), atol=1e-5
    )  # face centres map to (0.5, 0.5)
    assert mean_size[1] == pytest.approx(3.5 / 3)


def test_tiles_round_trip_to_image_order():
    height, width = 13, 21  # not multiples of the tile size
    rows, cols = raycast.tile_layout(height, width)
    values = (rows * 100 + cols).float().unsqueeze(0)
    image = raycast.untile(values, height, width)[0]
    expected = torch.arange(height).unsqueeze(1) * 100 + torch.arange(width)
    assert torch.equal(image, expected.float())
