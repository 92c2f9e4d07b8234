"""Vectorised ray casting: camera rays, the environment box, and convex primitives.

Layout: per-pixel vectors are (B, 3, P) with components on dim 1 and pixels contiguous
(component-wise arithmetic on contiguous rows is an order of magnitude faster on CPU than
reducing over a trailing axis of 3). Pixels are in tile-major order: P = T * L with tiles of
`TILE` x `TILE` = L pixels.

All rays of a tile form a *bundle*: a cone from a common apex (the camera, a point light) or
a parallel beam (the sun). A primitive's bounding sphere is first tested against whole
bundles (images x primitives x tiles, cheap); only the surviving (primitive, tile) pairs are
intersected exactly, for all L pixels of the tile at once. No Python loop runs over pixels;
the only loop is over the three primitive kinds.

Primitives are convex: ellipsoids, boxes and capped cylinders with arbitrary rotation. An
affine map sends each to a unit shape (unit sphere, cube [-1, 1]^3, cylinder of radius 1 and
half-height 1 along local y); the ray parameter t is unchanged by that map, so a hit is the
interval of t where the mapped ray is inside the unit shape. Misses are reported as t >= MISS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

KIND_ELLIPSOID, KIND_BOX, KIND_CYLINDER = 0, 1, 2
TILE = 8
LANES = TILE * TILE
HIT_EPSILON = 1e-4
MISS = 1.0e30  # ray parameter of "no hit" (finite, so masks can multiply it)
_PRIM_BITS = 16  # closest-hit keys pack (t bits, primitive slot) into one int64
# Positive float32 values order like their bit patterns; "no hit" is the key of t = MISS.
_NO_HIT_KEY = (int(torch.tensor(MISS, dtype=torch.float32).view(torch.int32)) << _PRIM_BITS) | (
    2**_PRIM_BITS - 1
)


def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Dot product over dim 1 of (N, 3, ...) tensors (broadcasting)."""
    return a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1] + a[:, 2] * b[:, 2]


def length(a: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(dot(a, a))


# Comparisons returning float 0/1 masks. On CPU, bool tensors, `torch.where` and `fmax` are
# 10-30x slower than float arithmetic, so the hot paths blend with float masks instead.
def _compare(op, a: torch.Tensor, b) -> torch.Tensor:
    shape = torch.broadcast_shapes(a.shape, b.shape if isinstance(b, torch.Tensor) else ())
    return op(a, b, out=torch.empty(shape, dtype=a.dtype, device=a.device))


def gt(a: torch.Tensor, b) -> torch.Tensor:
    return _compare(torch.gt, a, b)


def ge(a: torch.Tensor, b) -> torch.Tensor:
    return _compare(torch.ge, a, b)


def lt(a: torch.Tensor, b) -> torch.Tensor:
    return _compare(torch.lt, a, b)


def le(a: torch.Tensor, b) -> torch.Tensor:
    return _compare(torch.le, a, b)


def blend(mask: torch.Tensor, a, b):
    """`a` where mask is 1, `b` where it is 0 (float mask, finite values)."""
    return b + mask * (a - b)


@dataclass
class PrimitiveTensors:
    """The primitives of a batch of scenes, padded to K slots (kind -1 = empty slot)."""

    kind: torch.Tensor  # (B, K) long
    center: torch.Tensor  # (B, K, 3)
    rotation: torch.Tensor  # (B, K, 3, 3) world-from-local, columns are the local axes
    size: (
        torch.Tensor
    )  # (B, K, 3) half extents / semi-axes; cylinder: (radius_x, half_height, radius_z)

    def __post_init__(self) -> None:
        if self.kind.shape[1] >= 2**_PRIM_BITS:
            raise ValueError(f"at most {2**_PRIM_BITS - 1} primitives per scene")
        inv_size = 1.0 / self.size.clamp(min=1e-6)
        # world -> unit-shape map: q = M (x - c), with M = diag(1/size) R^T
        self.to_unit = (self.rotation.transpose(-1, -2) * inv_size.unsqueeze(-1)).contiguous()
        ellipsoid = self.size.amax(-1)
        cylinder = torch.sqrt(
            torch.maximum(self.size[..., 0], self.size[..., 2]) ** 2 + self.size[..., 1] ** 2
        )
        box = self.size.norm(dim=-1)
        self.radius = torch.where(
            self.kind == KIND_ELLIPSOID,
            ellipsoid,
            torch.where(self.kind == KIND_CYLINDER, cylinder, box),
        )

    @property
    def slots(self) -> int:
        return self.kind.shape[1]

    def select(self, images: torch.Tensor) -> PrimitiveTensors:
        """The primitives of a subset of the batch's images."""
        return PrimitiveTensors(
            self.kind[images], self.center[images], self.rotation[images], self.size[images]
        )


# --------------------------------------------------------------------------- pixel layout


def tile_layout(
    height: int, width: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column of every pixel in tile-major order, over the image padded to whole tiles
    (pixels beyond the image are rendered and cropped)."""
    tiles_y, tiles_x = math.ceil(height / TILE), math.ceil(width / TILE)
    ty, tx, py, px = torch.meshgrid(
        torch.arange(tiles_y, device=device),
        torch.arange(tiles_x, device=device),
        torch.arange(TILE, device=device),
        torch.arange(TILE, device=device),
        indexing="ij",
    )
    return (ty * TILE + py).reshape(-1), (tx * TILE + px).reshape(-1)


def untile(values: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, P) or (B, C, P) in tile-major order -> (B, height, width) or (B, height, width, C)."""
    tiles_y, tiles_x = math.ceil(height / TILE), math.ceil(width / TILE)
    if values.dim() == 3:
        values = values.permute(0, 2, 1)
    rest = values.shape[2:]
    grid = values.reshape(values.shape[0], tiles_y, tiles_x, TILE, TILE, *rest)
    grid = grid.transpose(2, 3).reshape(values.shape[0], tiles_y * TILE, tiles_x * TILE, *rest)
    return grid[:, :height, :width]


def camera_rays(
    basis: torch.Tensor, focal: torch.Tensor, center: torch.Tensor, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit world directions (B, 3, P) through pixel centres, and z-depth per unit ray length.

    basis: (B, 3, 3) rows = camera right, up, forward in world coordinates; focal (B, 2) =
    (fx, fy) in pixels; center (B, 2) = principal point (cx, cy). Image rows grow downwards.
    z-depth of a hit at ray length t is t * zscale (the distance along the optical axis).
    """
    rows, cols = tile_layout(height, width, basis.device)
    x = (cols.to(basis.dtype) + 0.5 - center[:, :1]) / focal[:, :1]  # (B, P)
    y = -(rows.to(basis.dtype) + 0.5 - center[:, 1:]) / focal[:, 1:]
    zscale = torch.rsqrt(x * x + y * y + 1.0)
    camera = torch.stack((x * zscale, y * zscale, zscale), dim=1)  # (B, 3, P)
    return torch.bmm(basis.transpose(1, 2), camera), zscale


# --------------------------------------------------------------------------- environment box


@dataclass
class EnvironmentHit:
    """Where rays leave the environment box: distance, face id, and float masks of the exit
    axis (x, y, z) and of the direction's sign on each axis (1 = negative)."""

    t: torch.Tensor  # (B, P)
    face: torch.Tensor  # (B, P) long
    axis: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    negative: tuple[torch.Tensor, torch.Tensor, torch.Tensor]

    def select(self, images: torch.Tensor) -> EnvironmentHit:
        """The hits of a subset of the batch's images."""
        return EnvironmentHit(
            self.t[images],
            self.face[images],
            tuple(a[images] for a in self.axis),
            tuple(n[images] for n in self.negative),
        )

    def face_mask(self, face: int) -> torch.Tensor:
        """Float mask of pixels whose ray leaves through `face`."""
        axis, neg = self.axis[face // 2], self.negative[face // 2]
        return axis * neg if face % 2 else axis * (1.0 - neg)


def environment_hits(
    origins: torch.Tensor, directions: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor
) -> EnvironmentHit:
    """Exit distance and face of rays that start inside an axis-aligned box (a room, or a
    ground plane with far-away open walls for outdoor scenes).

    origins (B, 3, P|1), directions (B, 3, P|1), lower/upper (B, 3). Faces: 0 +x wall,
    1 -x wall, 2 ceiling (+y), 3 floor (-y), 4 +z wall, 5 -z wall.
    """
    inv = 1.0 / (directions + 1e-30)  # finite even for axis-parallel rays
    exit_axis = torch.maximum(
        (lower.unsqueeze(-1) - origins) * inv, (upper.unsqueeze(-1) - origins) * inv
    )
    ex, ey, ez = exit_axis[:, 0], exit_axis[:, 1], exit_axis[:, 2]
    t = torch.minimum(torch.minimum(ex, ey), ez)
    fx = le(ex, t)
    fy = le(ey, t) * (1.0 - fx)
    fz = 1.0 - fx - fy
    negative = tuple(lt(directions[:, c], 0.0).expand_as(t) for c in range(3))
    face = fy * 2.0 + fz * 4.0 + fx * negative[0] + fy * negative[1] + fz * negative[2]
    return EnvironmentHit(t, face.long(), (fx, fy, fz), negative)


# --------------------------------------------------------------------------- unit-shape kernels


def unit_shape_interval(
    kind: int, lo: torch.Tensor, ld: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry and exit ray parameters of rays lo + t ld (each (n, 3, ...)) against a unit shape.

    Misses return entry >= MISS. All values stay finite.
    """
    ox, oy, oz = lo[:, 0], lo[:, 1], lo[:, 2]
    dx, dy, dz = ld[:, 0], ld[:, 1], ld[:, 2]
    if kind == KIND_ELLIPSOID:
        a = dx * dx + dy * dy + dz * dz
        b = ox * dx + oy * dy + oz * dz
        c = ox * ox + oy * oy + oz * oz - 1.0
        disc = b * b - a * c
        root = torch.sqrt(disc.clamp(min=0.0))
        inv_a = 1.0 / a
        near, far = (-b - root) * inv_a, (-b + root) * inv_a
        return near + MISS * lt(disc, 0.0), far
    if kind == KIND_BOX:
        near, far = None, None
        for o, d in ((ox, dx), (oy, dy), (oz, dz)):
            inv = 1.0 / (d + 1e-30)
            t1, t2 = (-1.0 - o) * inv, (1.0 - o) * inv
            lo_t, hi_t = torch.minimum(t1, t2), torch.maximum(t1, t2)
            near = lo_t if near is None else torch.maximum(near, lo_t)
            far = hi_t if far is None else torch.minimum(far, hi_t)
        return near + MISS * gt(near, far), far
    if kind == KIND_CYLINDER:
        a = (dx * dx + dz * dz).clamp(min=1e-12)
        b = ox * dx + oz * dz
        c = ox * ox + oz * oz - 1.0
        disc = b * b - a * c
        root = torch.sqrt(disc.clamp(min=0.0))
        inv_a = 1.0 / a
        inv_y = 1.0 / (dy + 1e-30)
        y1, y2 = (-1.0 - oy) * inv_y, (1.0 - oy) * inv_y
        near = torch.maximum((-b - root) * inv_a, torch.minimum(y1, y2))
        far = torch.minimum((-b + root) * inv_a, torch.maximum(y1, y2))
        return near + MISS * torch.maximum(lt(disc, 0.0), gt(near, far)), far
    raise ValueError(f"unknown primitive kind {kind}")


def first_positive(
    near: torch.Tensor, far: torch.Tensor, t_min: float = HIT_EPSILON
) -> torch.Tensor:
    """The first surface crossing after t_min: the entry, or the exit for rays that start
    inside a primitive; >= MISS where there is none."""
    use_near = gt(near, t_min)  # also 1 for misses, whose entry is >= MISS
    use_far = gt(far, t_min) * (1.0 - use_near)
    return near * use_near + far * use_far + MISS * (1.0 - use_near - use_far)


# --------------------------------------------------------------------------- ray bundles


@dataclass
class ConeBundles:
    """Per tile: the cone from `apex` that contains every ray segment of the tile."""

    apex: torch.Tensor  # (B, 3)
    axis: torch.Tensor  # (B, 3, T)
    cos_half: torch.Tensor  # (B, T)
    sin_half: torch.Tensor  # (B, T)
    reach: torch.Tensor  # (B, T) farthest distance from the apex any segment needs
    active: torch.Tensor  # (B, T) the tile has at least one ray


@dataclass
class BeamBundles:
    """Per tile: a cylinder of rays parallel to `direction` containing the tile's rays."""

    direction: torch.Tensor  # (B, 3)
    center: torch.Tensor  # (B, 3, T) mean ray origin projected on the plane normal to direction
    radius: torch.Tensor  # (B, T)
    lowest: torch.Tensor  # (B, T) smallest origin coordinate along direction
    active: torch.Tensor  # (B, T)


def _tiles(x: torch.Tensor) -> torch.Tensor:
    """(B, P) -> (B, T, L) and (B, C, P) -> (B, C, T, L)."""
    return x.reshape(*x.shape[:-1], -1, LANES)


def camera_bundles(
    origin: torch.Tensor,
    basis: torch.Tensor,
    focal: torch.Tensor,
    center: torch.Tensor,
    height: int,
    width: int,
) -> ConeBundles:
    """The cones of the camera rays of every tile, from the intrinsics alone (the direction
    farthest from a tile's central ray is one of its corner rays)."""
    tiles_y, tiles_x = math.ceil(height / TILE), math.ceil(width / TILE)
    device, dtype = basis.device, basis.dtype
    ty, tx = torch.meshgrid(
        torch.arange(tiles_y, device=device, dtype=dtype),
        torch.arange(tiles_x, device=device, dtype=dtype),
        indexing="ij",
    )
    ty, tx = ty.reshape(-1) * TILE, tx.reshape(-1) * TILE  # (T,) top-left pixel corner

    def direction(
        px: torch.Tensor, py: torch.Tensor
    ) -> torch.Tensor:  # camera frame, unit, (B, 3, T)
        x = (px - center[:, :1]) / focal[:, :1]
        y = -(py - center[:, 1:]) / focal[:, 1:]
        d = torch.stack((x, y, torch.ones_like(x)), dim=1)
        return d / length(d).unsqueeze(1)

    axis = direction(tx + TILE / 2, ty + TILE / 2)
    cos_half = None
    for cx in (tx, tx + TILE):
        for cy in (ty, ty + TILE):
            cosine = dot(axis, direction(cx, cy))
            cos_half = cosine if cos_half is None else torch.minimum(cos_half, cosine)
    cos_half = cos_half.clamp(-1.0, 1.0) - 1e-6
    sin_half = torch.sqrt((1.0 - cos_half * cos_half).clamp(min=0.0))
    world_axis = torch.bmm(basis.transpose(1, 2), axis)
    reach = torch.full_like(cos_half, math.inf)
    return ConeBundles(
        origin, world_axis, cos_half, sin_half, reach, torch.ones_like(cos_half, dtype=torch.bool)
    )


def cone_bundles(
    apex: torch.Tensor, points: torch.Tensor, valid: torch.Tensor, reach: float | None = None
) -> ConeBundles:
    """Bundle the segments apex -> point of each tile (points (B, 3, P), valid (B, P) float
    0/1 or bool).

    `reach` overrides the segment length (math.inf for camera rays, which are unbounded).
    """
    offsets = _tiles(points - apex.unsqueeze(-1))  # (B, 3, T, L)
    dist = length(offsets).clamp(min=1e-9)  # (B, T, L)
    weight = _tiles(valid).to(points.dtype)
    unit = offsets * (weight / dist).unsqueeze(1)  # zero on invalid lanes
    axis = unit.sum(-1)
    axis = axis / length(axis).clamp(min=1e-9).unsqueeze(1)
    cosines = dot(unit, axis.unsqueeze(-1)) + 2.0 * (
        1.0 - weight
    )  # invalid lanes never the minimum
    cos_half = cosines.amin(-1).clamp(-1.0, 1.0) - 1e-6  # widen a hair against rounding
    sin_half = torch.sqrt((1.0 - cos_half * cos_half).clamp(min=0.0))
    far = (dist * weight).amax(-1) if reach is None else torch.full_like(cos_half, reach)
    return ConeBundles(apex, axis, cos_half, sin_half, far, weight.amax(-1) > 0)


def beam_bundles(direction: torch.Tensor, points: torch.Tensor, valid: torch.Tensor) -> BeamBundles:
    """Bundle rays leaving `points` (B, 3, P) along the shared unit `direction` (B, 3);
    valid (B, P) float 0/1 or bool."""
    pts = _tiles(points)
    d = direction[:, :, None, None]
    along = dot(pts, d)  # (B, T, L)
    flat = pts - along.unsqueeze(1) * d
    weight = _tiles(valid).to(points.dtype)
    count = weight.sum(-1).clamp(min=1.0)
    center = (flat * weight.unsqueeze(1)).sum(-1) / count.unsqueeze(1)  # (B, 3, T)
    spread = length(flat - center.unsqueeze(-1)) * weight
    lowest = (along + (1.0 - weight) * MISS).amin(-1)
    return BeamBundles(direction, center, spread.amax(-1) + 1e-5, lowest, weight.amax(-1) > 0)


def cone_overlap(bundles: ConeBundles, prims: PrimitiveTensors) -> torch.Tensor:
    """(B, K, T) whether a primitive's bounding sphere may meet a tile's cone."""
    offset = prims.center - bundles.apex.unsqueeze(1)  # (B, K, 3)
    dist = offset.norm(dim=-1).clamp(min=1e-9)  # (B, K)
    radius = prims.radius
    sin_g = (radius / dist).clamp(max=1.0)
    cos_g = torch.sqrt(1.0 - sin_g * sin_g)
    cos_beta = torch.bmm(offset, bundles.axis) / dist.unsqueeze(-1)  # (B, K, T)
    cos_h, sin_h = bundles.cos_half.unsqueeze(1), bundles.sin_half.unsqueeze(1)
    cos_limit = cos_h * cos_g.unsqueeze(-1) - sin_h * sin_g.unsqueeze(-1)
    wide = (cos_h <= 0.0) | (dist <= radius).unsqueeze(-1)  # cone >= 90 deg, or apex inside sphere
    in_reach = (dist - radius).unsqueeze(-1) <= bundles.reach.unsqueeze(1)
    hit = (wide | (cos_beta >= cos_limit)) & in_reach
    return hit & bundles.active.unsqueeze(1) & (prims.kind >= 0).unsqueeze(-1)


def beam_overlap(bundles: BeamBundles, prims: PrimitiveTensors) -> torch.Tensor:
    """(B, K, T) whether a primitive's bounding sphere may meet a tile's parallel beam."""
    d = bundles.direction
    along = (prims.center * d.unsqueeze(1)).sum(-1)  # (B, K)
    flat = prims.center - along.unsqueeze(-1) * d.unsqueeze(1)  # (B, K, 3)
    gap2 = None
    for c in range(3):
        diff = flat[:, :, c].unsqueeze(-1) - bundles.center[:, c].unsqueeze(1)  # (B, K, T)
        gap2 = diff * diff if gap2 is None else gap2 + diff * diff
    radius = prims.radius.unsqueeze(-1)
    reach = bundles.radius.unsqueeze(1) + radius
    hit = (gap2 <= reach * reach) & (along.unsqueeze(-1) + radius >= bundles.lowest.unsqueeze(1))
    return hit & bundles.active.unsqueeze(1) & (prims.kind >= 0).unsqueeze(-1)


# --------------------------------------------------------------------------- exact tests


def _tile_rays(x: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Rays of candidate tiles: (B, 3, P|1) -> (n, 3, L|1)."""
    if x.shape[-1] == 1:
        return x[b]
    return _tiles(x)[b, :, t]


def _candidate_intervals(
    overlap: torch.Tensor, prims: PrimitiveTensors, origins: torch.Tensor, directions: torch.Tensor
):
    """Yield (b, k, t, t_near, t_far) per primitive kind over candidate (primitive, tile) pairs;
    t_near/t_far are (n, L)."""
    for kind in (KIND_ELLIPSOID, KIND_BOX, KIND_CYLINDER):
        pairs = (overlap & (prims.kind == kind).unsqueeze(-1)).nonzero()
        if pairs.numel() == 0:
            continue
        b, k, t = pairs.unbind(1)
        to_unit = prims.to_unit[b, k]  # (n, 3, 3)
        o = _tile_rays(origins, b, t) - prims.center[b, k].unsqueeze(-1)
        lo = torch.bmm(to_unit, o)
        ld = torch.bmm(to_unit, _tile_rays(directions, b, t))
        near, far = unit_shape_interval(kind, lo, ld)
        shape = (len(b), LANES)
        yield b, k, t, near.expand(shape), far.expand(shape)


def _lane_index(b: torch.Tensor, t: torch.Tensor, tiles: int) -> torch.Tensor:
    """Flat pixel index (n, L) of every lane of candidate tiles."""
    lanes = torch.arange(LANES, device=b.device)
    return ((b * tiles + t) * LANES).unsqueeze(1) + lanes


def closest_hits(
    origins: torch.Tensor, directions: torch.Tensor, prims: PrimitiveTensors, overlap: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest primitive along each ray: t (B, P) (>= MISS where none) and slot (B, P) (-1 where
    none). Ties go to the lower slot, so the result never depends on evaluation order."""
    batch, pixels = directions.shape[0], directions.shape[-1]
    tiles = pixels // LANES
    keys = torch.full((batch * pixels,), _NO_HIT_KEY, dtype=torch.int64, device=directions.device)
    for b, k, t, near, far in _candidate_intervals(overlap, prims, origins, directions):
        dist = first_positive(near, far)  # misses get huge keys that lose every comparison
        key = (dist.view(torch.int32).to(torch.int64) << _PRIM_BITS) | k.unsqueeze(1)
        keys.scatter_reduce_(
            0, _lane_index(b, t, tiles).reshape(-1), key.reshape(-1), reduce="amin"
        )
    keys = keys.view(batch, pixels)
    dist = (keys >> _PRIM_BITS).to(torch.int32).view(torch.float32)
    found = dist < MISS * 0.5
    slot = torch.where(found, keys & (2**_PRIM_BITS - 1), torch.full_like(keys, -1))
    return dist.clamp(max=MISS), slot


def any_hits(
    origins: torch.Tensor,
    directions: torch.Tensor,
    max_distance: torch.Tensor,
    prims: PrimitiveTensors,
    overlap: torch.Tensor,
) -> torch.Tensor:
    """(B, P) float 0/1: does a primitive cross origin + t * direction for 0 < t < max_distance?"""
    batch, pixels = max_distance.shape
    tiles = pixels // LANES
    count = torch.zeros(batch * pixels, device=max_distance.device, dtype=max_distance.dtype)
    for b, _k, t, near, far in _candidate_intervals(overlap, prims, origins, directions):
        hit = lt(first_positive(near, far, t_min=1e-5), _tiles(max_distance)[b, t])
        count.index_add_(0, _lane_index(b, t, tiles).reshape(-1), hit.reshape(-1))
    return count.view(batch, pixels).clamp(max=1.0)


# --------------------------------------------------------------------------- surface geometry


def primitive_surface(
    prims: PrimitiveTensors, image: torch.Tensor, slot: torch.Tensor, points: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Surface attributes at m hit `points` (3, m) on primitives (image (m,), slot (m,)).

    Returns the outward unit normal (3, m); metric surface coordinates (2, m) (boxes map each
    face by its two in-plane axes, cylinders unroll their side by arc length, ellipsoids use
    longitude/latitude scaled by their mean radius); unit-shape coordinates in [0, 1] (2, m)
    for pictures stretched once over a face; and the mean half size (m,).
    """
    batch, slots = prims.kind.shape
    flat = image * slots + slot
    table = (
        torch.cat(
            (
                prims.to_unit.reshape(batch, slots, 9),
                prims.center,
                prims.size,
                prims.kind.unsqueeze(-1).to(prims.size.dtype),
            ),
            dim=-1,
        )
        .reshape(batch * slots, -1)
        .t()
        .contiguous()
    )
    m = [row.take(flat) for row in table]  # 9 map entries, centre, size, kind
    cx, cy, cz, sx, sy, sz, kind = m[9:]
    rx, ry, rz = points[0] - cx, points[1] - cy, points[2] - cz
    qx, qy, qz = (m[3 * i] * rx + m[3 * i + 1] * ry + m[3 * i + 2] * rz for i in range(3))
    ax, ay, az = qx.abs(), qy.abs(), qz.abs()
    is_box = (kind == KIND_BOX).to(qx.dtype)
    is_cyl = (kind == KIND_CYLINDER).to(qx.dtype)
    is_ell = 1.0 - is_box - is_cyl

    # gradient of the unit shape's implicit function, in unit-shape coordinates
    face_x = ge(ax, ay) * ge(ax, az)
    face_y = (1.0 - face_x) * ge(ay, az)
    face_z = 1.0 - face_x - face_y
    radial = torch.sqrt(qx * qx + qz * qz)
    cap = is_cyl * ge(ay, radial)
    round_part = (1.0 - is_box) * (1.0 - cap)  # ellipsoids and cylinder sides
    gx = is_box * face_x * torch.sign(qx) + round_part * qx
    gy = is_box * face_y * torch.sign(qy) + cap * torch.sign(qy) + is_ell * qy
    gz = is_box * face_z * torch.sign(qz) + round_part * qz
    normal = torch.stack([m[i] * gx + m[3 + i] * gy + m[6 + i] * gz for i in range(3)])  # M^T g
    normal = normal / torch.sqrt((normal * normal).sum(0)).clamp(min=1e-12)

    lx, ly, lz = qx * sx, qy * sy, qz * sz
    angle = torch.atan2(qz, qx)
    mean_size = (sx + sy + sz) / 3.0
    latitude = torch.asin(
        (qy / torch.sqrt(qx * qx + qy * qy + qz * qz).clamp(min=1e-9)).clamp(-1.0, 1.0)
    )
    side = is_cyl - cap
    turn = angle * (0.5 / math.pi) + 0.5
    u = (
        is_box * blend(face_x, lz, lx)
        + cap * lx
        + side * angle * (0.5 * (sx + sz))
        + is_ell * angle * mean_size
    )
    v = is_box * blend(face_y, lz, ly) + cap * lz + side * ly + is_ell * latitude * mean_size
    fu = (
        is_box * (blend(face_x, qz, qx) * 0.5 + 0.5)
        + cap * (qx * 0.5 + 0.5)
        + (side + is_ell) * turn
    )
    fv = (
        is_box * (blend(face_y, qz, qy) * 0.5 + 0.5)
        + cap * (qz * 0.5 + 0.5)
        + side * (qy * 0.5 + 0.5)
        + is_ell * (latitude / math.pi + 0.5)
    )
    return normal, torch.stack((u, v)), torch.stack((fu, fv)), mean_size
