"""Procedural RGB-D rendering: the default labeled data and the unlabeled target domain.

`render_batch(config, seed, count)` draws `count` random scenes and ray-casts them into
uint8 RGB images, exact z-depth (distance along the optical axis, in metres) and a validity
mask. Sky - and any surface farther than `max_depth` - is invalid: mask False, depth 0.
Image i of a call depends only on (config, seed, i), so results do not depend on the chunk
size, and `render_shard` derives independent seeds for shards that can be built and resumed
one by one. The same seed and config give identical bytes on the same software stack.

The "target" domain stands in for real photographs: textures cut from real photos, more
cluttered indoor and tabletop layouts, narrower lenses and camera effects (noise, blur,
white balance, vignetting, JPEG). Its depth is the held-out evaluation ground truth.

`render_scene(scenes, cameras, ...)` renders hand-built `scenes.Scene` objects, which is how
the tests check depth against closed-form answers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from depth_core.synth import raycast, shading
from depth_core.synth.camera_effects import (
    CameraEffectsConfig,
    EffectDraw,
    apply_sensor_effects,
    jpeg_roundtrip,
    sample_effects,
)
from depth_core.synth.scenes import (
    MATERIAL_FIELDS,
    Atmosphere,
    Camera,
    Environment,
    Lighting,
    Scene,
    SceneStatistics,
    sample_scene,
)
from depth_core.synth.textures import TextureBank, build_texture_bank, intra_op_threads

Domain = Literal["synthetic", "target"]

# Per-domain defaults for the fields of RenderConfig left at None.
DOMAIN_PRESETS: dict[str, dict] = {
    "synthetic": {
        "indoor_fraction": 0.35,
        "tabletop_fraction": 0.2,
        "fov_deg": (40.0, 90.0),
        "photo_fraction": 0.0,
        "camera_effects": False,
        "clutter": 0.0,
        "natural_colors": 0.5,
        "camera_jitter": 1.0,
    },
    "target": {
        "indoor_fraction": 0.4,
        "tabletop_fraction": 0.3,
        "fov_deg": (50.0, 72.0),
        "photo_fraction": 0.8,
        "camera_effects": True,
        "clutter": 0.6,
        "natural_colors": 0.9,
        "camera_jitter": 0.5,
    },
}


class RenderConfig(BaseModel):
    """What `render_batch` renders. Fields left at None take the domain's preset."""

    model_config = ConfigDict(extra="forbid")

    height: int = Field(128, ge=8, le=4096)
    width: int = Field(128, ge=8, le=4096)
    domain: Domain = "synthetic"
    min_objects: int = Field(3, ge=0, le=64, description="fewest primitives per scene")
    max_objects: int = Field(20, ge=0, le=64, description="most primitives per scene")
    indoor_fraction: float | None = Field(None, ge=0.0, le=1.0, description="share of room scenes")
    tabletop_fraction: float | None = Field(
        None, ge=0.0, le=1.0, description="share of tabletop scenes; the rest is outdoor"
    )
    fov_deg: tuple[float, float] | None = Field(
        None, description="horizontal field of view range, degrees"
    )
    photo_fraction: float | None = Field(
        None, ge=0.0, le=1.0, description="share of photo textures (target only)"
    )
    fog: bool = Field(True, description="distance haze outdoors")
    camera_effects: bool | None = Field(None, description="apply `effects` (default: target only)")
    effects: CameraEffectsConfig = Field(default_factory=CameraEffectsConfig)
    max_depth: float = Field(
        1000.0, gt=0.0, description="surfaces farther than this are invalid, like sky"
    )
    texture_seed: int = Field(0, ge=0, description="seed of the texture bank")
    texture_size: int = Field(
        64, ge=8, le=512, description="texture tile resolution (power of two)"
    )
    chunk_size: int = Field(
        32, ge=1, le=4096, description="images ray-cast together (bounds memory)"
    )
    threads: int | None = Field(
        1,
        ge=1,
        description="torch intra-op threads while rendering (None: leave torch's setting); "
        "one thread per process is fastest on a shared machine, use processes for more cores",
    )

    @model_validator(mode="after")
    def _check(self) -> RenderConfig:
        if self.min_objects > self.max_objects:
            raise ValueError(f"min_objects ({self.min_objects}) > max_objects ({self.max_objects})")
        stats = self.statistics()
        if stats.indoor_fraction + stats.tabletop_fraction > 1.0 + 1e-9:
            raise ValueError("indoor_fraction + tabletop_fraction must not exceed 1")
        low, high = stats.fov_deg
        if not 1.0 <= low <= high <= 160.0:
            raise ValueError(f"fov_deg must satisfy 1 <= low <= high <= 160, got {self.fov_deg}")
        if self.domain == "synthetic" and stats.photo_fraction > 0:
            raise ValueError(
                "photo_fraction > 0 needs domain 'target' (the synthetic bank has no photos)"
            )
        if self.texture_size & (self.texture_size - 1):
            raise ValueError(f"texture_size must be a power of two, got {self.texture_size}")
        return self

    def _preset(self, name: str):
        value = getattr(self, name, None)
        return DOMAIN_PRESETS[self.domain][name] if value is None else value

    def statistics(self) -> SceneStatistics:
        """The scene sampler's knobs with domain presets filled in."""
        preset = DOMAIN_PRESETS[self.domain]
        return SceneStatistics(
            indoor_fraction=self._preset("indoor_fraction"),
            tabletop_fraction=self._preset("tabletop_fraction"),
            min_objects=self.min_objects,
            max_objects=self.max_objects,
            fov_deg=tuple(self._preset("fov_deg")),
            photo_fraction=self._preset("photo_fraction"),
            clutter=preset["clutter"],
            natural_colors=preset["natural_colors"],
            camera_jitter=preset["camera_jitter"],
            fog=self.fog,
        )

    @property
    def effects_enabled(self) -> bool:
        return bool(self._preset("camera_effects"))


# --------------------------------------------------------------------------- packing


@dataclass
class SceneTensors:
    """A batch of scenes and cameras as padded tensors."""

    prims: raycast.PrimitiveTensors
    materials: torch.Tensor  # (B, K + 7, len(MATERIAL_FIELDS)): primitives, 6 faces, floor strip
    lower: torch.Tensor  # (B, 3)
    upper: torch.Tensor
    open_faces: torch.Tensor  # (B, 6) bool
    strip: torch.Tensor  # (B, 2); x0 > x1 when there is no strip
    light_is_sun: torch.Tensor  # (B,) bool
    light_vector: torch.Tensor  # (B, 3): direction towards the sun, or point-light position
    light_color: torch.Tensor
    falloff: torch.Tensor  # (B,)
    ambient_sky: torch.Tensor
    ambient_ground: torch.Tensor
    zenith: torch.Tensor
    horizon: torch.Tensor
    fog_distance: torch.Tensor  # (B,)
    clouds: torch.Tensor  # (B,)
    cloud_tile: torch.Tensor  # (B,) long
    cloud_scale: torch.Tensor  # (B,)
    origin: torch.Tensor  # (B, 3) camera position
    basis: torch.Tensor  # (B, 3, 3) rows right, up, forward
    focal: torch.Tensor  # (B, 2)
    center: torch.Tensor  # (B, 2)


_KINDS = {
    "ellipsoid": raycast.KIND_ELLIPSOID,
    "box": raycast.KIND_BOX,
    "cylinder": raycast.KIND_CYLINDER,
}

# SceneTensors fields that are not float32; the rest are
_FIELD_DTYPES = {"open_faces": torch.bool, "light_is_sun": torch.bool, "cloud_tile": torch.int64}


def pack_scenes(
    scenes: list[Scene],
    cameras: list[Camera],
    height: int,
    width: int,
    device: str | torch.device = "cpu",
) -> SceneTensors:
    """Stack scenes into padded tensors; raises ValueError naming a bad scene or primitive."""
    if len(scenes) != len(cameras) or not scenes:
        raise ValueError(
            f"need as many cameras as scenes (>= 1), got {len(scenes)} and {len(cameras)}"
        )
    slots = max(1, max(len(s.primitives) for s in scenes))
    surfaces = _PaddedSurfaces.empty(len(scenes), slots)
    rows = []
    for i, (scene, camera) in enumerate(zip(scenes, cameras)):
        surfaces.add_scene(i, scene)
        rows.append(
            {
                **_environment_row(scene.environment),
                **_lighting_row(scene.lighting),
                **_atmosphere_row(scene.atmosphere),
                **_camera_row(i, camera, scene.environment, height, width),
            }
        )

    def tensor(values, dtype=torch.float32) -> torch.Tensor:
        return torch.as_tensor(np.asarray(values), dtype=dtype).to(device)

    columns = {
        name: tensor([row[name] for row in rows], _FIELD_DTYPES.get(name, torch.float32))
        for name in rows[0]
    }
    prims = raycast.PrimitiveTensors(
        kind=tensor(surfaces.kind, torch.int64),
        center=tensor(surfaces.center),
        rotation=tensor(surfaces.rotation),
        size=tensor(surfaces.size),
    )
    return SceneTensors(prims=prims, materials=tensor(surfaces.materials), **columns)


@dataclass
class _PaddedSurfaces:
    """The primitives of a batch padded to `slots` per image (kind -1: empty slot) and the
    material rows of every surface: the primitives, then 6 environment faces and the strip."""

    kind: np.ndarray  # (B, slots) int64
    center: np.ndarray  # (B, slots, 3)
    size: np.ndarray  # (B, slots, 3)
    rotation: np.ndarray  # (B, slots, 3, 3)
    materials: np.ndarray  # (B, slots + 7, len(MATERIAL_FIELDS))

    @classmethod
    def empty(cls, batch: int, slots: int) -> _PaddedSurfaces:
        return cls(
            kind=np.full((batch, slots), -1, np.int64),
            center=np.zeros((batch, slots, 3), np.float32),
            size=np.ones((batch, slots, 3), np.float32),
            rotation=np.tile(np.eye(3, dtype=np.float32), (batch, slots, 1, 1)),
            materials=np.zeros((batch, slots + 7, len(MATERIAL_FIELDS)), np.float32),
        )

    def add_scene(self, i: int, scene: Scene) -> None:
        """Fill image `i`'s rows, checking its primitives and environment."""
        slots = self.kind.shape[1]
        for j, prim in enumerate(scene.primitives):
            if prim.kind not in _KINDS:
                raise ValueError(
                    f"scene {i} primitive {j}: unknown kind {prim.kind!r}; use {sorted(_KINDS)}"
                )
            if np.any(np.asarray(prim.size) <= 0):
                raise ValueError(
                    f"scene {i} primitive {j}: sizes must be positive, got {prim.size}"
                )
            self.kind[i, j] = _KINDS[prim.kind]
            self.center[i, j] = prim.center
            self.size[i, j] = prim.size
            self.rotation[i, j] = prim.rotation
            self.materials[i, j] = prim.material.packed()
        env = scene.environment
        if len(env.materials) != 6 or len(env.open_faces) != 6:
            raise ValueError(f"scene {i}: the environment needs 6 face materials and 6 open flags")
        for f, material in enumerate(env.materials):
            self.materials[i, slots + f] = material.packed()
        self.materials[i, slots + 6] = env.strip_material.packed()


def _environment_row(env: Environment) -> dict:
    return {
        "lower": env.lower,
        "upper": env.upper,
        "open_faces": env.open_faces,
        "strip": env.strip if env.strip is not None else (1.0, -1.0),  # x0 > x1: no strip
    }


def _lighting_row(light: Lighting) -> dict:
    """The light as packed: a unit vector towards the sun, or the point light's position."""
    is_sun = light.sun_direction is not None
    vector = light.sun_direction if is_sun else light.position
    if is_sun:
        vector = np.asarray(vector, np.float32) / max(float(np.linalg.norm(vector)), 1e-9)
    return {
        "light_is_sun": is_sun,
        "light_vector": vector,
        "light_color": light.color,
        "falloff": light.falloff,
        "ambient_sky": light.ambient_sky,
        "ambient_ground": light.ambient_ground,
    }


def _atmosphere_row(sky: Atmosphere) -> dict:
    return {
        "zenith": sky.zenith,
        "horizon": sky.horizon,
        "fog_distance": sky.fog_distance,
        "clouds": sky.clouds,
        "cloud_tile": sky.cloud_tile,
        "cloud_scale": sky.cloud_scale,
    }


def _camera_row(i: int, camera: Camera, env: Environment, height: int, width: int) -> dict:
    """The camera's pose and pixel intrinsics; it must sit inside the environment box, where
    every ray has an exit face."""
    position = np.asarray(camera.position, np.float32)
    if not (np.all(position > env.lower) and np.all(position < env.upper)):
        raise ValueError(
            f"scene {i}: the camera at {position.tolist()} must be inside the environment box "
            f"{np.asarray(env.lower).tolist()} .. {np.asarray(env.upper).tolist()}"
        )
    fx, fy, cx, cy = camera.intrinsics(height, width)
    return {
        "origin": camera.position,
        "basis": camera.basis(),
        "focal": (fx, fy),
        "center": (cx, cy),
    }


# --------------------------------------------------------------------------- tracing

_FLOOR = 3


def _per_pixel(table: torch.Tensor, index: torch.Tensor) -> list[torch.Tensor]:
    """Look up rows of a per-image table (B, S, C) for every pixel's row index (B, P) (long):
    C tensors of shape (B, P)."""
    batch, rows, channels = table.shape
    flat = index + torch.arange(batch, device=index.device).unsqueeze(1) * rows
    columns = table.reshape(batch * rows, channels).t().contiguous()
    return [column.take(flat) for column in columns]


def _shadow_mask(
    batch: SceneTensors,
    points: torch.Tensor,
    needs_test: torch.Tensor,
    to_light: torch.Tensor,
    distance: torch.Tensor,
) -> torch.Tensor:
    """(B, P) float, 1 where the segment from a surface point to the light is blocked.

    points (B, 3, P) shadow-ray origins; needs_test (B, P) float 0/1; to_light (B, 3, P) unit;
    distance (B, P) to the light (MISS for the sun). Sunlit and lamp-lit images are traced
    separately. Sunlight is also blocked by closed environment faces (street walls); point
    lights sit inside their room.
    """
    blocked = torch.zeros_like(needs_test)
    sun_images = batch.light_is_sun.nonzero(as_tuple=True)[0]
    if sun_images.numel():
        prims = batch.prims.select(sun_images)
        direction = batch.light_vector[sun_images]
        pts, need = points[sun_images], needs_test[sun_images]
        overlap = raycast.beam_overlap(raycast.beam_bundles(direction, pts, need), prims)
        hit = raycast.any_hits(pts, direction.unsqueeze(-1), distance[sun_images], prims, overlap)
        # closed faces other than the floor (street walls) can block the sun
        walls = ~batch.open_faces[sun_images][:, [0, 1, 2, 4, 5]].all(1)
        if bool(walls.any()):
            walled = sun_images[walls]
            exit_face = raycast.environment_hits(
                points[walled],
                batch.light_vector[walled].unsqueeze(-1),
                batch.lower[walled],
                batch.upper[walled],
            ).face
            closed = (~batch.open_faces[walled]).to(points.dtype)
            hit[walls] += torch.gather(closed, 1, exit_face)
        blocked[sun_images] = hit.clamp(max=1.0) * need
    lamp_images = (~batch.light_is_sun).nonzero(as_tuple=True)[0]
    if lamp_images.numel():
        prims = batch.prims.select(lamp_images)
        pts, need = points[lamp_images], needs_test[lamp_images]
        overlap = raycast.cone_overlap(
            raycast.cone_bundles(batch.light_vector[lamp_images], pts, need), prims
        )
        hit = raycast.any_hits(pts, to_light[lamp_images], distance[lamp_images], prims, overlap)
        blocked[lamp_images] = hit * need
    return blocked


def trace(
    batch: SceneTensors, height: int, width: int, bank: TextureBank, max_depth: float = math.inf
):
    """Ray-cast a packed batch. Returns linear radiance (B, 3, P), z-depth (B, P) with 0 where
    invalid, the validity mask (B, P) bool and the visible surface id (B, P) (primitive slot,
    or slots + face for the environment, -1 for sky), all in tile-major pixel order (see
    `raycast.untile`)."""
    hits = _camera_hits(batch, height, width, max_depth)
    frame = _surface_frame(batch.prims, hits)
    surface_id = _surface_ids(batch, hits)
    material = dict(zip(MATERIAL_FIELDS, _per_pixel(batch.materials, surface_id.long())))
    pixel_angle = 1.0 / batch.focal[:, :1]
    albedo = _albedo(material, hits, frame, pixel_angle, bank)
    light = _light_paths(batch, hits, frame.normal)
    radiance = _shade(batch, hits, frame.normal, albedo, material, light)
    radiance = _composite_sky(batch, hits, radiance, light.sun, pixel_angle, bank)
    surface_id = surface_id * (1.0 - hits.sky) - hits.sky
    return radiance, hits.depth, hits.valid > 0.5, surface_id


@dataclass
class _CameraHits:
    """Where the camera rays of a batch end. Masks are float 0/1; pixels in tile-major order."""

    directions: torch.Tensor  # (B, 3, P) unit
    env: raycast.EnvironmentHit  # where each ray leaves the environment box
    slot: torch.Tensor  # (B, P) long: nearest primitive, -1 for none
    obj: torch.Tensor  # (B, P): a primitive is nearer than the environment
    sky: torch.Tensor  # (B, P): the ray leaves through an open face
    t: torch.Tensor  # (B, P) distance to the visible surface (clamped on sky rays)
    points: torch.Tensor  # (B, 3, P) the visible surface points
    depth: torch.Tensor  # (B, P) z-depth, 0 where invalid
    valid: torch.Tensor  # (B, P): not sky and not beyond max_depth


def _camera_hits(batch: SceneTensors, height: int, width: int, max_depth: float) -> _CameraHits:
    """Cast the primary rays: the nearest primitive or environment face each pixel sees."""
    origin = batch.origin.unsqueeze(-1)
    directions, zscale = raycast.camera_rays(batch.basis, batch.focal, batch.center, height, width)
    env = raycast.environment_hits(origin, directions, batch.lower, batch.upper)
    bundles = raycast.camera_bundles(
        batch.origin, batch.basis, batch.focal, batch.center, height, width
    )
    overlap = raycast.cone_overlap(bundles, batch.prims)
    t_obj, slot = raycast.closest_hits(origin, directions, batch.prims, overlap)
    obj = raycast.lt(t_obj, env.t)
    t_ray = torch.minimum(t_obj, env.t)
    image_row = torch.arange(zscale.shape[0], device=zscale.device).unsqueeze(1)
    open_face = batch.open_faces.to(zscale.dtype).reshape(-1).take(env.face + 6 * image_row)
    sky = (1.0 - obj) * open_face
    depth = t_ray * zscale
    valid = (1.0 - sky) * raycast.le(depth, max_depth)
    depth = depth * valid
    t_ray = t_ray.clamp(max=1e6)  # sky rays: keep the arithmetic below finite
    points = origin + directions * t_ray.unsqueeze(1)
    return _CameraHits(directions, env, slot, obj, sky, t_ray, points, depth, valid)


@dataclass
class _SurfaceFrame:
    """Geometry of the visible surfaces, for texturing and shading."""

    normal: torch.Tensor  # (B, 3, P) unit, turned towards the camera
    facing: torch.Tensor  # (B, P) normal . ray direction before the turn
    uv: torch.Tensor  # (B, 2, P) metric surface coordinates
    fit_uv: torch.Tensor  # (B, 2, P) unit-shape coordinates (pictures fitted to a face)
    size: torch.Tensor  # (B, P) mean half size of the primitive seen, 1 elsewhere


def _surface_frame(prims: raycast.PrimitiveTensors, hits: _CameraHits) -> _SurfaceFrame:
    """Normals and texture coordinates: the environment's everywhere, then the primitives' on
    their pixels."""
    env, points = hits.env, hits.points
    n_pixels = hits.t.shape[1]
    (fx, fy, fz), (nx, ny, nz) = env.axis, env.negative
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    normal = torch.stack(
        (fx * (2.0 * nx - 1.0), fy * (2.0 * ny - 1.0), fz * (2.0 * nz - 1.0)), dim=1
    )
    blend = raycast.blend
    uv = torch.stack((blend(fx, z, x), blend(fy, z, y)), dim=1)  # walls: (horizontal, height)
    fit_uv = torch.zeros_like(uv)
    obj_size = torch.ones_like(hits.t)
    on_obj = (hits.obj.view(-1) > 0.5).nonzero().squeeze(1)
    if on_obj.numel():
        image, pixel = torch.div(on_obj, n_pixels, rounding_mode="floor"), on_obj % n_pixels
        base = image * (3 * n_pixels) + pixel  # flat index of component 0 in a (B, 3, P) tensor
        base2 = image * (2 * n_pixels) + pixel
        hit_points = torch.stack([points.reshape(-1).take(base + c * n_pixels) for c in range(3)])
        n_obj, uv_obj, fit_obj, size_obj = raycast.primitive_surface(
            prims, image, hits.slot.view(-1).take(on_obj), hit_points
        )
        for c in range(3):
            normal.view(-1).index_copy_(0, base + c * n_pixels, n_obj[c])
        for c in range(2):
            uv.view(-1).index_copy_(0, base2 + c * n_pixels, uv_obj[c])
            fit_uv.view(-1).index_copy_(0, base2 + c * n_pixels, fit_obj[c])
        obj_size.view(-1).index_copy_(0, on_obj, size_obj)
    facing = raycast.dot(normal, hits.directions)
    normal = normal * (1.0 - 2.0 * raycast.gt(facing, 0.0)).unsqueeze(1)  # seen from behind
    return _SurfaceFrame(normal, facing, uv, fit_uv, obj_size)


def _surface_ids(batch: SceneTensors, hits: _CameraHits) -> torch.Tensor:
    """(B, P) float row of `batch.materials` each pixel shows: the primitive slot, or slots +
    face for the environment, slots + 6 on the floor strip."""
    x, strip = hits.points[:, 0], batch.strip
    on_strip = (
        hits.env.face_mask(_FLOOR)
        * (1.0 - hits.obj)
        * raycast.ge(x, strip[:, :1])
        * raycast.le(x, strip[:, 1:])
    )
    face = hits.env.face.to(hits.t.dtype)
    environment = batch.prims.slots + face + (6.0 - face) * on_strip
    return raycast.blend(hits.obj, hits.slot.to(hits.t.dtype), environment)


def _albedo(
    material: dict[str, torch.Tensor],
    hits: _CameraHits,
    frame: _SurfaceFrame,
    pixel_angle: torch.Tensor,
    bank: TextureBank,
) -> torch.Tensor:
    """Linear albedo (B, 3, P), sampled at the mip level of each pixel's footprint so distant
    and grazing surfaces do not alias."""
    cos_a, sin_a = material["cos"], material["sin"]
    scale_u, scale_v = material["scale_u"], material["scale_v"]
    uv = frame.uv
    u = (cos_a * uv[:, 0] - sin_a * uv[:, 1]) * scale_u + material["offset_u"]
    v = (sin_a * uv[:, 0] + cos_a * uv[:, 1]) * scale_v + material["offset_v"]
    fit = material["fit"] * hits.obj
    u = raycast.blend(fit, frame.fit_uv[:, 0], u)
    v = raycast.blend(fit, frame.fit_uv[:, 1], v)
    density = raycast.blend(fit, 0.5 / frame.size, torch.sqrt((scale_u * scale_v).abs()))
    footprint = hits.t * pixel_angle * torch.rsqrt(frame.facing.abs().clamp(min=0.05))
    lod = torch.log2((footprint * density * bank.tile_size).clamp(min=1.0))
    tile = material["tile"].reshape(-1)
    texel = bank.sample(tile, u.reshape(-1), v.reshape(-1), lod.reshape(-1))
    texel = texel.view(3, *hits.t.shape).transpose(0, 1)
    color_a = torch.stack((material["a_r"], material["a_g"], material["a_b"]), dim=1)
    color_b = torch.stack((material["b_r"], material["b_g"], material["b_b"]), dim=1)
    return color_a + (color_b - color_a) * texel


@dataclass
class _LightPaths:
    """From every visible surface point to the light."""

    sun: torch.Tensor  # (B, 1): 1 = sun, 0 = point light
    to_light: torch.Tensor  # (B, 3, P) unit
    distance: torch.Tensor  # (B, P) to the point light's position
    faces_light: torch.Tensor  # (B, P) float: the surface faces the light (and is not sky)
    blocked: torch.Tensor  # (B, P) float: a shadow ray hits something on the way


def _light_paths(batch: SceneTensors, hits: _CameraHits, normal: torch.Tensor) -> _LightPaths:
    """Directions and distances to the light, and the shadow test of the points facing it
    (shadow rays start slightly off the surface so they do not hit it)."""
    points = hits.points
    offset_points = points + normal * (1e-3 + 1e-4 * hits.t).unsqueeze(1)
    sun = batch.light_is_sun.to(points.dtype).view(-1, 1)
    light = batch.light_vector.unsqueeze(-1)
    to_point = light - offset_points
    point_distance = raycast.length(to_point).clamp(min=1e-6)
    to_light = to_point / point_distance.unsqueeze(1)
    to_light = to_light + (light - to_light) * sun.unsqueeze(1)
    light_distance = point_distance + (raycast.MISS - point_distance) * sun
    faces_light = raycast.gt(raycast.dot(normal, to_light), 0.0) * (1.0 - hits.sky)
    blocked = _shadow_mask(batch, offset_points, faces_light, to_light, light_distance)
    return _LightPaths(sun, to_light, point_distance, faces_light, blocked)


def _shade(
    batch: SceneTensors,
    hits: _CameraHits,
    normal: torch.Tensor,
    albedo: torch.Tensor,
    material: dict[str, torch.Tensor],
    light: _LightPaths,
) -> torch.Tensor:
    """Linear radiance (B, 3, P) of the visible surfaces: direct light (point lights fall off
    with distance), hemispherical ambient darkened in the environment's corners, then haze."""
    falloff = 1.0 / (1.0 + (light.distance / batch.falloff.unsqueeze(1)) ** 2)
    visibility = light.faces_light * (1.0 - light.blocked) * (falloff + (1.0 - falloff) * light.sun)
    radiance = shading.direct_and_ambient(
        albedo,
        normal,
        hits.directions,
        light.to_light,
        batch.light_color.unsqueeze(-1),
        visibility,
        batch.ambient_sky.unsqueeze(-1),
        batch.ambient_ground.unsqueeze(-1),
        _corner_occlusion(batch, hits),
        material["specular"],
        material["shininess"],
    )
    horizon = batch.horizon.unsqueeze(-1)
    return shading.apply_haze(radiance, hits.t, batch.fog_distance.unsqueeze(1), horizon)


def _corner_occlusion(batch: SceneTensors, hits: _CameraHits) -> torch.Tensor:
    """(B, P) ambient occlusion: rooms and streets darken the corners of their environment box;
    primitives and open scenes keep 1."""
    occlusion = torch.ones_like(hits.t)
    walled = (~batch.open_faces[:, [0, 1, 2, 4, 5]].all(1)).nonzero(as_tuple=True)[0]
    if walled.numel():
        corners = shading.room_corner_occlusion(
            hits.points[walled], batch.lower[walled], batch.upper[walled], hits.env.select(walled)
        )
        occlusion[walled] = raycast.blend(hits.obj[walled], 1.0, corners)
    return occlusion


def _composite_sky(
    batch: SceneTensors,
    hits: _CameraHits,
    radiance: torch.Tensor,
    sun: torch.Tensor,
    pixel_angle: torch.Tensor,
    bank: TextureBank,
) -> torch.Tensor:
    """`radiance` with the sky (gradient, sun glow, clouds) on rays that leave through an open
    face; the sky is only evaluated on images that show some."""
    sky = hits.sky
    has_sky = (sky.amax(dim=1) > 0).nonzero(as_tuple=True)[0]
    if has_sky.numel():
        sun_dir = batch.light_vector * sun
        sky_color = shading.sky_radiance(
            hits.directions[has_sky],
            batch.zenith[has_sky].unsqueeze(-1),
            batch.horizon[has_sky].unsqueeze(-1),
            sun_dir[has_sky].unsqueeze(-1),
            batch.light_color[has_sky].unsqueeze(-1),
            batch.clouds[has_sky].unsqueeze(1),
            batch.cloud_tile[has_sky].unsqueeze(1),
            batch.cloud_scale[has_sky].unsqueeze(1),
            pixel_angle[has_sky],
            bank,
        )
        radiance[has_sky] = raycast.blend(sky[has_sky].unsqueeze(1), sky_color, radiance[has_sky])
    return radiance


# --------------------------------------------------------------------------- public API


def render_scene(
    scenes: list[Scene],
    cameras: list[Camera],
    height: int,
    width: int,
    bank: TextureBank | None = None,
    effects: list[EffectDraw] | None = None,
    max_depth: float = math.inf,
    device: str | torch.device = "cpu",
    threads: int | None = 1,
) -> dict[str, np.ndarray]:
    """Render hand-built scenes: {"image": uint8 (N, H, W, 3), "depth": float32 (N, H, W),
    "mask": bool (N, H, W)}. `effects` (one draw per image) adds camera effects to the image;
    `threads` as in `RenderConfig.threads`."""
    bank = (bank or build_texture_bank("synthetic")).to(device)
    with torch.no_grad(), intra_op_threads(threads):
        batch = pack_scenes(scenes, cameras, height, width, device)
        radiance, depth, valid, surface = trace(batch, height, width, bank, max_depth)
        radiance = raycast.untile(shading.expose(radiance), height, width)
        radiance = shading.smooth_edges(radiance, raycast.untile(surface, height, width))
        if effects is not None:
            radiance = apply_sensor_effects(radiance, effects)
        image = shading.encode_srgb8(radiance).cpu().numpy()
        depth = raycast.untile(depth, height, width)
        valid = raycast.untile(valid, height, width)
    if effects is not None:
        image = jpeg_roundtrip(image, [d.jpeg_quality for d in effects])
    return {
        "image": image,
        "depth": depth.cpu().numpy().astype(np.float32),
        "mask": valid.cpu().numpy(),
    }


_DOMAIN_SALT = {"synthetic": 0, "target": 1}


def _image_rng(seed: int, index: int, stream: int, domain: str) -> np.random.Generator:
    """The random stream of image `index`: independent of chunking, and of the other domain
    (the same seed in both domains must not give the same scene layouts)."""
    return np.random.default_rng(
        np.random.SeedSequence([seed, index, stream, _DOMAIN_SALT[domain]])
    )


def render_batch(
    config: RenderConfig,
    seed: int,
    count: int,
    device: str | torch.device = "cpu",
    id_prefix: str | None = None,
) -> dict:
    """Render `count` random scenes: {"image": uint8 (N, H, W, 3), "depth": float32 (N, H, W)
    z-depth in metres, 0 where invalid, "mask": bool (N, H, W), "id": list[str]}.

    Deterministic in (config, seed); image i does not depend on `count` or the chunk size.
    """
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    h, w = config.height, config.width
    if count == 0:
        return {
            "image": np.zeros((0, h, w, 3), np.uint8),
            "depth": np.zeros((0, h, w), np.float32),
            "mask": np.zeros((0, h, w), bool),
            "id": [],
        }
    with intra_op_threads(config.threads):
        bank = build_texture_bank(config.domain, config.texture_seed, config.texture_size).to(
            device
        )
        stats = config.statistics()
        parts = []
        for start in range(0, count, config.chunk_size):
            indices = range(start, min(count, start + config.chunk_size))
            scenes, cameras, draws = [], [], []
            for i in indices:
                scene, camera = sample_scene(_image_rng(seed, i, 0, config.domain), stats, bank)
                scenes.append(scene)
                cameras.append(camera)
                if config.effects_enabled:
                    draws.append(
                        sample_effects(_image_rng(seed, i, 1, config.domain), config.effects)
                    )
            parts.append(
                render_scene(
                    scenes,
                    cameras,
                    h,
                    w,
                    bank,
                    draws if config.effects_enabled else None,
                    config.max_depth,
                    device,
                    threads=None,  # already set for the whole batch
                )
            )
    prefix = id_prefix if id_prefix is not None else f"{config.domain}-{seed}"
    return {
        "image": np.concatenate([p["image"] for p in parts]),
        "depth": np.concatenate([p["depth"] for p in parts]),
        "mask": np.concatenate([p["mask"] for p in parts]),
        "id": [f"{prefix}-{i:06d}" for i in range(count)],
    }


def shard_seed(base_seed: int, shard_index: int) -> int:
    """The seed of shard `shard_index`: independent streams for every (base_seed, shard)."""
    if base_seed < 0 or shard_index < 0:
        raise ValueError(f"base_seed and shard_index must be >= 0, got {base_seed}, {shard_index}")
    state = np.random.SeedSequence([base_seed, shard_index, 0x5EED]).generate_state(1, np.uint64)[0]
    return int(state) & (2**63 - 1)


def render_shard(
    config: RenderConfig,
    base_seed: int,
    shard_index: int,
    count: int,
    device: str | torch.device = "cpu",
) -> dict:
    """Render shard `shard_index` of a dataset (see `render_batch`); ids are unique across
    shards, and any shard can be rebuilt alone."""
    return render_batch(
        config,
        shard_seed(base_seed, shard_index),
        count,
        device,
        id_prefix=f"{config.domain}-{base_seed}-{shard_index:06d}",
    )


@dataclass(frozen=True)
class ShardRenderer:
    """`make_shard` for `build_sharded`: renders shard i of a dataset (picklable, so worker
    processes can render shards in parallel; the output does not depend on the worker count)."""

    config: RenderConfig
    base_seed: int
    keep_depth: bool = True

    def __call__(self, shard_index: int, start: int, count: int) -> dict:
        batch = render_shard(self.config, self.base_seed, shard_index, count)
        keys = ("id", "image", "depth", "mask") if self.keep_depth else ("id", "image")
        return {key: batch[key] for key in keys}
