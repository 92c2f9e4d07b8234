"""Scene descriptions (plain dataclasses) and the random sampler of whole scenes.

A scene is an environment box (a room; or a ground plane whose far walls are open sky, with
optional building rows), up to a few dozen convex primitives, one light and an atmosphere.
Tests build scenes by hand; `sample_scene` draws them from three layouts that carry the cues
a monocular depth model should learn:

- outdoor: ground with perspective and a horizon, roads, trees, cars, poles, rocks, buildings,
  sun with cast shadows, sky and haze;
- indoor: a room (floor, walls, ceiling) with furniture against the walls, tables with things
  on them, floor clutter, a ceiling light;
- tabletop: a camera looking down on a cluttered table, as in grasping and SLAM datasets.

Units are metres; world y is up and the ground is y = 0. All randomness comes from the
`numpy.random.Generator` passed in, so a seed fixes the scene.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from depth_core.synth.textures import TextureBank, hsv_to_linear

FAR = 1.0e5  # where "absent" environment walls are put; they are open to the sky
FACE_NAMES = ("wall+x", "wall-x", "ceiling", "floor", "wall+z", "wall-z")
LAYOUTS = ("outdoor", "indoor", "tabletop")


# --------------------------------------------------------------------------- scene dataclasses


@dataclass
class Material:
    """Albedo = color_a + (color_b - color_a) * tile value, in linear RGB.

    Texture coordinates are metres on the surface, rotated by `angle`, multiplied by `scale`
    (tile periods per metre) and shifted by `offset`; with `fit` a primitive instead shows the
    tile once per face (labels, posters). Tile 0 is flat white: albedo = color_b.
    """

    tile: int = 0
    color_a: tuple[float, float, float] = (0.0, 0.0, 0.0)
    color_b: tuple[float, float, float] = (0.5, 0.5, 0.5)
    scale: tuple[float, float] = (1.0, 1.0)
    offset: tuple[float, float] = (0.0, 0.0)
    angle: float = 0.0
    fit: bool = False
    specular: float = 0.0
    shininess: float = 32.0

    def packed(self) -> list[float]:
        """The material as the flat row the renderer uploads (see `MATERIAL_FIELDS`)."""
        return [
            float(self.tile),
            *self.color_a,
            *self.color_b,
            *self.scale,
            *self.offset,
            math.cos(self.angle),
            math.sin(self.angle),
            float(self.fit),
            self.specular,
            self.shininess,
        ]


MATERIAL_FIELDS = (
    "tile",
    "a_r",
    "a_g",
    "a_b",
    "b_r",
    "b_g",
    "b_b",
    "scale_u",
    "scale_v",
    "offset_u",
    "offset_v",
    "cos",
    "sin",
    "fit",
    "specular",
    "shininess",
)


@dataclass
class Primitive:
    """A convex solid: kind "ellipsoid" | "box" | "cylinder" (axis = local y).

    size: semi-axes / half extents; for cylinders (radius_x, half_height, radius_z).
    rotation: world-from-local 3x3 (columns are the local axes).
    """

    kind: str
    center: np.ndarray
    size: np.ndarray
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3, dtype=np.float32))
    material: Material = field(default_factory=Material)


@dataclass
class Environment:
    """An axis-aligned box seen from inside. Faces listed in `open_faces` show sky (and let
    sunlight through): an outdoor scene is a floor whose other faces are open and far away.

    An optional strip x0 <= x <= x1 of the floor uses `strip_material` (a road, a rug).
    """

    lower: np.ndarray
    upper: np.ndarray
    open_faces: tuple[bool, ...] = (True, True, True, False, True, True)
    materials: tuple[Material, ...] = field(
        default_factory=lambda: tuple(Material() for _ in FACE_NAMES)
    )
    strip: tuple[float, float] | None = None
    strip_material: Material = field(default_factory=Material)


@dataclass
class Lighting:
    """One light: the sun (`sun_direction`, unit, towards the sun) or a point light
    (`position`), plus a hemispherical ambient term (sky colour above, ground bounce below)."""

    color: tuple[float, float, float] = (3.0, 3.0, 3.0)
    sun_direction: np.ndarray | None = None
    position: np.ndarray | None = None
    falloff: float = 3.0  # point light: irradiance ~ 1 / (1 + (d / falloff)^2)
    ambient_sky: tuple[float, float, float] = (0.3, 0.3, 0.3)
    ambient_ground: tuple[float, float, float] = (0.1, 0.1, 0.1)

    def __post_init__(self) -> None:
        if (self.sun_direction is None) == (self.position is None):
            raise ValueError("Lighting needs exactly one of sun_direction or position")


@dataclass
class Atmosphere:
    """Sky gradient, clouds and haze (fog_distance = inf: clear air)."""

    zenith: tuple[float, float, float] = (0.15, 0.3, 0.7)
    horizon: tuple[float, float, float] = (0.6, 0.7, 0.8)
    fog_distance: float = math.inf
    clouds: float = 0.0
    cloud_tile: int = 0
    cloud_scale: float = 0.2


@dataclass
class Camera:
    """A pinhole camera: position, yaw (about world y; 0 looks along +z), pitch (positive looks
    up), roll (about the optical axis), all radians; horizontal field of view `hfov` (radians)."""

    position: np.ndarray
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    hfov: float = math.radians(60.0)

    def basis(self) -> np.ndarray:
        """3x3 with rows right, up, forward in world coordinates."""
        cy, sy, cp, sp = (
            math.cos(self.yaw),
            math.sin(self.yaw),
            math.cos(self.pitch),
            math.sin(self.pitch),
        )
        forward = np.array([sy * cp, sp, cy * cp])
        right0 = np.array([cy, 0.0, -sy])
        up0 = np.cross(forward, right0)
        cr, sr = math.cos(self.roll), math.sin(self.roll)
        right = cr * right0 + sr * up0
        up = -sr * right0 + cr * up0
        return np.stack([right, up, forward]).astype(np.float32)

    def intrinsics(self, height: int, width: int) -> tuple[float, float, float, float]:
        """(fx, fy, cx, cy) in pixels; square pixels, principal point at the image centre."""
        focal = 0.5 * width / math.tan(0.5 * self.hfov)
        return focal, focal, 0.5 * width, 0.5 * height


@dataclass
class Scene:
    environment: Environment
    primitives: list[Primitive]
    lighting: Lighting
    atmosphere: Atmosphere = field(default_factory=Atmosphere)
    layout: str = "custom"


# --------------------------------------------------------------------------- sampling knobs


@dataclass(frozen=True)
class SceneStatistics:
    """What the sampler draws from; `render.RenderConfig` resolves into one of these."""

    indoor_fraction: float = 0.35
    tabletop_fraction: float = 0.2
    min_objects: int = 3
    max_objects: int = 20
    fov_deg: tuple[float, float] = (40.0, 90.0)
    photo_fraction: float = 0.0  # share of surfaces textured with photo crops (target bank)
    clutter: float = 0.0  # 0 = uniform object count, 1 = biased towards max_objects
    natural_colors: float = 0.5  # share of colours drawn from natural palettes
    camera_jitter: float = 1.0  # spread of camera heights and angles around the typical ones
    fog: bool = True


def rotation_y(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=np.float32)


def rotation_x(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]], dtype=np.float32)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random rotation (from a random unit quaternion)."""
    w, x, y, z = rng.standard_normal(4) / 1.0
    n = math.sqrt(w * w + x * x + y * y + z * z) or 1.0
    w, x, y, z = w / n, x / n, y / n, z / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ],
        dtype=np.float32,
    )


def lowest_offset(kind: str, size: np.ndarray, rotation: np.ndarray) -> float:
    """How far below its centre a rotated primitive reaches (to rest it on a surface)."""
    up = rotation[1]  # world y expressed in local axes
    if kind == "box":
        return float(np.abs(up) @ size)
    if kind == "ellipsoid":
        return float(np.linalg.norm(up * size))
    return float(abs(up[1]) * size[1] + math.hypot(up[0] * size[0], up[2] * size[2]))


# --------------------------------------------------------------------------- materials

# palette name -> (hue range, saturation range, value range)
PALETTES = {
    "paint": ((0.0, 1.0), (0.0, 0.25), (0.55, 0.95)),
    "wood": ((0.04, 0.11), (0.35, 0.75), (0.25, 0.8)),
    "grey": ((0.0, 1.0), (0.0, 0.08), (0.2, 0.85)),
    "grass": ((0.17, 0.33), (0.35, 0.8), (0.2, 0.6)),
    "soil": ((0.05, 0.14), (0.15, 0.5), (0.25, 0.7)),
    "foliage": ((0.18, 0.38), (0.3, 0.85), (0.12, 0.5)),
    "vivid": ((0.0, 1.0), (0.45, 1.0), (0.35, 1.0)),
    "any": ((0.0, 1.0), (0.0, 1.0), (0.1, 1.0)),
    "dark": ((0.0, 1.0), (0.0, 0.4), (0.05, 0.35)),
}


@dataclass(frozen=True)
class Category:
    """How the surfaces of one kind are textured: procedural tile groups, photo tile groups
    (target bank), colour palettes, pattern contrast, tile periods per metre, glossiness."""

    groups: tuple[str, ...]
    photo_groups: tuple[str, ...]
    palettes: tuple[str, ...]
    contrast: tuple[float, float]
    periods_per_metre: tuple[float, float]
    specular: tuple[float, float] = (0.0, 0.0)


# fmt: off
CATEGORIES = {
    "floor": Category(
        ("planks", "tiles", "noise", "plain", "checker", "marble", "cells"),
        ("photo_gravel", "photo_bricks", "photo_grey", "photo"),
        ("wood", "grey", "paint"), (0.2, 0.7), (0.3, 2.0), (0.0, 0.3)),
    "wall": Category(
        ("plain", "plain", "noise", "stripes", "bricks", "tiles", "gradient"),
        ("photo_bricks", "photo_grey", "photo"),
        ("paint", "paint", "grey"), (0.05, 0.4), (0.3, 2.0), (0.0, 0.05)),
    "ceiling": Category(
        ("plain", "noise", "tiles"), ("photo_grey",), ("paint",), (0.03, 0.2), (0.3, 1.5)),
    "ground": Category(
        ("noise", "leaves", "cells", "noise", "plain"),
        ("photo_grass", "photo_gravel", "photo_grey"),
        ("grass", "soil", "grey"), (0.3, 0.8), (0.2, 1.5), (0.0, 0.05)),
    "facade": Category(
        ("windows", "bricks", "tiles", "plain", "noise"),
        ("photo_bricks", "photo", "photo_grey"),
        ("paint", "grey", "soil"), (0.2, 0.7), (0.1, 0.5), (0.0, 0.1)),
    "object": Category(
        ("plain", "plain", "checker", "stripes", "noise", "gradient", "dots", "marble", "cells",
         "planks", "bricks"),
        ("photo", "decal", "decal_grey", "photo_grey"),
        ("vivid", "any", "paint", "wood", "dark"), (0.2, 0.9), (1.0, 8.0), (0.0, 0.6)),
    "furniture": Category(
        ("planks", "plain", "noise", "marble", "stripes"), ("photo", "photo_grey", "decal"),
        ("wood", "paint", "grey", "dark"), (0.1, 0.6), (0.5, 3.0), (0.0, 0.4)),
    "table": Category(
        ("planks", "plain", "noise", "marble"), ("photo", "photo_grey"),
        ("wood", "paint", "grey"), (0.1, 0.5), (0.5, 3.0), (0.0, 0.4)),
    "foliage": Category(
        ("leaves", "noise"), ("photo_grass",), ("foliage",), (0.4, 0.9), (0.5, 2.0)),
    "bark": Category(
        ("stripes", "noise", "planks"), ("photo_grey",), ("wood", "dark"), (0.3, 0.8), (2.0, 6.0)),
    "rock": Category(
        ("noise", "cells"), ("photo_gravel", "photo_grey"), ("grey", "soil"),
        (0.3, 0.8), (0.5, 3.0), (0.0, 0.15)),
    "car": Category(
        ("plain",), ("photo",), ("vivid", "grey", "dark", "paint"),
        (0.0, 0.2), (0.5, 1.0), (0.3, 0.9)),
}
# fmt: on


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return bounds[0] + rng.random() * (bounds[1] - bounds[0])


def _index(rng: np.random.Generator, count: int) -> int:
    """A uniform integer in [0, count) (faster than Generator.integers for scalars)."""
    return min(int(rng.random() * count), count - 1)


def sample_color(
    rng: np.random.Generator, palette: str, draws: np.ndarray | None = None
) -> np.ndarray:
    """A linear RGB colour from a named palette (`draws`: three uniforms used instead of `rng`)."""
    hue, sat, val = PALETTES[palette]
    h, s, v = rng.random(3) if draws is None else draws
    return hsv_to_linear(
        hue[0] + h * (hue[1] - hue[0]),
        sat[0] + s * (sat[1] - sat[0]),
        val[0] + v * (val[1] - val[0]),
    )


def _lerp(bounds: tuple[float, float], u: float) -> float:
    return float(bounds[0] + u * (bounds[1] - bounds[0]))


class MaterialSampler:
    """Draws materials for surface categories from one domain's texture bank."""

    def __init__(self, rng: np.random.Generator, bank: TextureBank, stats: SceneStatistics):
        self.rng, self.bank, self.stats = rng, bank, stats
        self.decals = set(bank.groups.get("decal", ())) | set(bank.groups.get("decal_grey", ()))

    def tile_from(
        self, groups: tuple[str, ...], u1: float | None = None, u2: float | None = None
    ) -> int:
        """A random tile of one of `groups` (those the bank has; tile 0 if none), drawn with the
        uniforms u1, u2 when given."""
        available = [g for g in groups if g in self.bank.groups]
        if not available:
            return 0
        u1 = self.rng.random() if u1 is None else u1
        u2 = self.rng.random() if u2 is None else u2
        tiles = self.bank.groups[available[int(u1 * len(available))]]
        return int(tiles[int(u2 * len(tiles))])

    def __call__(self, category: str, fit_probability: float = 0.0) -> Material:
        spec = CATEGORIES[category]
        r = self.rng.random(23)  # one block of uniforms per material: cheap and reproducible
        use_photo = r[0] < self.stats.photo_fraction
        tile = self.tile_from(spec.photo_groups if use_photo else spec.groups, r[1], r[2])
        natural = r[3] < self.stats.natural_colors
        palette = (
            spec.palettes[int(r[4] * len(spec.palettes))]
            if natural or category != "object"
            else "any"
        )
        color_b = sample_color(self.rng, palette, r[5:8])
        if self.bank.rgb[tile]:  # photos, roads: tint near white
            color_a = np.zeros(3, np.float32)
            color_b = (0.85 + 0.3 * r[8:11]).astype(np.float32) * _lerp((0.6, 1.1), r[11])
        elif r[12] < 0.25 and category in ("object", "floor", "furniture"):
            color_a = sample_color(self.rng, palette, r[8:11])  # two independent colours
        else:
            color_a = color_b * (1.0 - _lerp(spec.contrast, r[11]))
        periods = _lerp(spec.periods_per_metre, r[13])
        aspect = 1.0 if r[14] < 0.7 else _lerp((0.5, 2.0), r[15])
        angle = (0.0 if r[16] < 0.5 else math.pi / 2) if r[17] < 0.8 else r[16] * math.pi
        return Material(
            tile=tile,
            color_a=tuple(float(c) for c in color_a),
            color_b=tuple(float(c) for c in color_b),
            scale=(periods, periods * aspect),
            offset=(float(r[18]), float(r[19])),
            angle=float(angle),
            fit=bool(tile in self.decals or r[22] < fit_probability),
            specular=_lerp(spec.specular, r[20]),
            shininess=(8.0, 16.0, 32.0, 64.0)[int(r[21] * 4)],
        )


# --------------------------------------------------------------------------- scene builder


class _Builder:
    """Collects primitives for one scene while keeping count of the primitive budget."""

    def __init__(self, rng: np.random.Generator, materials: MaterialSampler, budget: int):
        self.rng = rng
        self.materials = materials
        self.budget = budget
        self.primitives: list[Primitive] = []
        self.supports: list[tuple[float, float, float, float]] = []  # (x, z, radius, top)

    @property
    def left(self) -> int:
        return self.budget - len(self.primitives)

    def add(
        self, kind: str, center, size, rotation=None, material: Material | None = None
    ) -> Primitive:
        prim = Primitive(
            kind=kind,
            center=np.asarray(center, dtype=np.float32),
            size=np.asarray(size, dtype=np.float32),
            rotation=np.eye(3, dtype=np.float32)
            if rotation is None
            else np.asarray(rotation, np.float32),
            material=material if material is not None else self.materials("object"),
        )
        self.primitives.append(prim)
        return prim

    def rest(
        self,
        kind: str,
        x: float,
        z: float,
        size,
        rotation,
        base: float = 0.0,
        material: Material | None = None,
        sink: float = 0.0,
    ) -> Primitive:
        """Add a primitive resting on a horizontal surface at height `base`."""
        size = np.asarray(size, dtype=np.float32)
        y = base + lowest_offset(kind, size, rotation) - sink
        return self.add(kind, (x, y, z), size, rotation, material)


def _object_rotation(rng: np.random.Generator, free: float) -> np.ndarray:
    """Mostly upright with a random heading; sometimes tipped over or arbitrarily turned."""
    u = rng.random()
    yaw = rotation_y(_uniform(rng, (0, 2 * math.pi)))
    if u < free:
        return random_rotation(rng)
    if u < free + 0.12:
        return yaw @ rotation_x(math.pi / 2)
    return yaw


def _generic_object(
    b: _Builder, x: float, z: float, scale: float, base: float = 0.0, free: float = 0.3
) -> None:
    """One random primitive of any kind resting at (x, z)."""
    rng = b.rng
    kind = ("ellipsoid", "box", "cylinder")[_index(rng, 3)]
    if kind == "ellipsoid" and rng.random() < 0.5:
        size = np.full(3, scale * _uniform(rng, (0.5, 1.0)))
    else:
        size = scale * rng.uniform(0.25, 1.0, 3)
    rot = _object_rotation(rng, free)
    b.rest(kind, x, z, size, rot, base, b.materials("object", fit_probability=0.15))
    if kind == "box" and rot[1, 1] > 0.999:  # flat top: others may stand on it
        b.supports.append((x, z, float(min(size[0], size[2])) * 0.7, base + 2 * float(size[1])))


def _on_some_support(b: _Builder, footprint: float) -> tuple[float, float, float] | None:
    """A random standing place (x, z, height) on a support large enough for `footprint`."""
    fits = [s for s in b.supports if s[2] > footprint]
    if not fits:
        return None
    x, z, radius, top = fits[_index(b.rng, len(fits))]
    r = (radius - footprint) * math.sqrt(b.rng.random())
    a = _uniform(b.rng, (0, 2 * math.pi))
    return x + r * math.cos(a), z + r * math.sin(a), top


def _view_point(
    rng, camera: Camera, near: float, far: float, spread: float = 1.0
) -> tuple[float, float]:
    """A ground position inside the camera's horizontal view, log-uniform in distance."""
    dist = math.exp(_uniform(rng, (math.log(near), math.log(far))))
    angle = camera.yaw + _uniform(rng, (-0.5, 0.5)) * (camera.hfov + 0.3) * spread
    return camera.position[0] + dist * math.sin(angle), camera.position[2] + dist * math.cos(angle)


def _object_count(rng, stats: SceneStatistics) -> int:
    u = rng.random()
    if stats.clutter > 0:
        u = u ** (1.0 / (1.0 + 3.0 * stats.clutter))
    return int(
        stats.min_objects + math.floor(u * (stats.max_objects - stats.min_objects + 1 - 1e-9))
    )


# --------------------------------------------------------------------------- layouts


def _sky(rng, overcast: bool) -> Atmosphere:
    if overcast:
        grey = _uniform(rng, (0.35, 0.8))
        zenith = hsv_to_linear(_uniform(rng, (0.55, 0.65)), _uniform(rng, (0.0, 0.12)), grey)
        horizon = hsv_to_linear(
            _uniform(rng, (0.5, 0.65)), _uniform(rng, (0.0, 0.08)), min(1.0, grey + 0.1)
        )
    else:
        zenith = hsv_to_linear(
            _uniform(rng, (0.54, 0.63)), _uniform(rng, (0.35, 0.75)), _uniform(rng, (0.5, 0.9))
        )
        horizon = hsv_to_linear(
            _uniform(rng, (0.5, 0.62)), _uniform(rng, (0.05, 0.3)), _uniform(rng, (0.8, 1.0))
        )
    return Atmosphere(
        zenith=tuple(float(c) for c in zenith),
        horizon=tuple(float(c) for c in horizon),
        clouds=_uniform(rng, (0.0, 0.9)) if rng.random() < 0.6 else 0.0,
        cloud_scale=_uniform(rng, (0.05, 0.3)),
    )


def _sun(rng, overcast: bool, sky: Atmosphere, ground_color: np.ndarray) -> Lighting:
    elevation = _uniform(rng, (math.radians(12), math.radians(75)))
    azimuth = _uniform(rng, (0, 2 * math.pi))
    direction = np.array(
        [
            math.cos(elevation) * math.sin(azimuth),
            math.sin(elevation),
            math.cos(elevation) * math.cos(azimuth),
        ],
        dtype=np.float32,
    )
    warmth = hsv_to_linear(_uniform(rng, (0.07, 0.13)), _uniform(rng, (0.0, 0.35)), 1.0)
    strength = _uniform(rng, (0.4, 1.0)) if overcast else _uniform(rng, (2.5, 4.5))
    ambient = _uniform(rng, (0.9, 1.4)) if overcast else _uniform(rng, (0.35, 0.7))
    sky_light = np.asarray(sky.zenith) * 0.5 + np.asarray(sky.horizon) * 0.5
    return Lighting(
        color=tuple(float(c) for c in warmth * strength),
        sun_direction=direction,
        ambient_sky=tuple(float(c) for c in sky_light * ambient),
        ambient_ground=tuple(float(c) for c in np.asarray(ground_color) * ambient * 0.5 + 0.02),
    )


def _outdoor(
    rng, stats: SceneStatistics, materials: MaterialSampler, jitter: float
) -> tuple[Scene, Camera]:
    """A ground plane under open sky, optionally along a road and between street walls."""
    ground = materials("ground")
    road = rng.random() < 0.5
    canyon = rng.random() < 0.35
    faces = _outdoor_faces(rng, materials, ground)
    strip, strip_material, cam_x = _road(rng, materials) if road else (None, Material(), 0.0)
    lower, upper, open_faces = _outdoor_bounds(rng, canyon, strip)
    if canyon:
        cam_x = float(np.clip(cam_x, lower[0] + 1.0, upper[0] - 1.0))
    camera = _outdoor_camera(rng, stats, jitter, cam_x, road or canyon, open_faces, upper)
    sky, light = _outdoor_light(rng, stats, materials, ground)
    b = _Builder(rng, materials, _object_count(rng, stats))
    _place_outdoor_objects(b, camera, lower, upper, strip, canyon)
    env = Environment(lower, upper, tuple(open_faces), tuple(faces), strip, strip_material)
    return Scene(env, b.primitives, light, sky, "outdoor"), camera


def _outdoor_faces(rng, materials: MaterialSampler, ground: Material) -> list[Material]:
    """Materials of the six environment faces: facades for the walls a street may close."""
    facade = materials("facade")
    return [
        facade,
        materials("facade") if rng.random() < 0.5 else facade,
        Material(),
        ground,
        facade,
        Material(),
    ]


def _road(rng, materials: MaterialSampler) -> tuple[tuple[float, float], Material, float]:
    """A road strip along z: its x extent, its material, and a camera x on it."""
    width = _uniform(rng, (5.0, 12.0))
    x0 = -width / 2 + _uniform(rng, (-1.5, 1.5))
    road_tiles = materials.bank.groups["road"]
    strip_material = Material(
        tile=int(road_tiles[_index(rng, len(road_tiles))]),
        color_b=tuple(
            float(c)
            for c in np.clip(1 + rng.normal(0, 0.05, 3), 0.8, 1.2) * _uniform(rng, (0.6, 1.4))
        ),
        scale=(1.0 / width, 1.0 / _uniform(rng, (6.0, 12.0))),
        offset=(-x0 / width, float(rng.random())),
        specular=_uniform(rng, (0.0, 0.2)),
    )
    return (x0, x0 + width), strip_material, _uniform(rng, (x0 + 1.0, x0 + width - 1.0))


def _outdoor_bounds(
    rng, canyon: bool, strip: tuple[float, float] | None
) -> tuple[np.ndarray, np.ndarray, list[bool]]:
    """The environment box (lower, upper, open faces): far and open to the sky, or a street
    canyon whose side walls (sometimes only one, sometimes with an end wall) are closed."""
    lower = np.array([-FAR, 0.0, -FAR], np.float32)
    upper = np.array([FAR, FAR, FAR], np.float32)
    open_faces = [True, True, True, False, True, True]
    if not canyon:
        return lower, upper, open_faces
    half = (strip[1] - strip[0]) / 2 if strip else _uniform(rng, (3.0, 8.0))
    centre = (strip[0] + strip[1]) / 2 if strip else 0.0
    lower[0] = centre - half - _uniform(rng, (1.0, 6.0))
    upper[0] = centre + half + _uniform(rng, (1.0, 6.0))
    open_faces[0] = open_faces[1] = False
    if rng.random() < 0.2:  # one side only
        open_faces[_index(rng, 2)] = True
        lower[0] = -FAR if open_faces[1] else lower[0]
        upper[0] = FAR if open_faces[0] else upper[0]
    upper[1] = _uniform(rng, (5.0, 25.0))
    if rng.random() < 0.25:
        upper[2] = _uniform(rng, (40.0, 150.0))
        open_faces[4] = False
    return lower, upper, open_faces


def _outdoor_camera(
    rng,
    stats: SceneStatistics,
    jitter: float,
    cam_x: float,
    along_street: bool,
    open_faces: list[bool],
    upper: np.ndarray,
) -> Camera:
    """A camera at eye height (sometimes elevated, then looking down), facing along the street
    when there is one. Street walls are raised above it (`upper` changes in place) so the camera
    stays between them."""
    hfov = math.radians(_uniform(rng, stats.fov_deg))
    height = float(np.clip(rng.normal(1.6, 0.35 * jitter), 0.4, 4.0))
    if rng.random() < 0.1 * jitter:
        height = _uniform(rng, (2.5, 8.0))  # elevated viewpoint
    pitch = float(np.clip(rng.normal(-0.06, 0.08 * jitter), -0.45, 0.2))
    if height > 2.5:
        pitch -= _uniform(rng, (0.05, 0.35))
    yaw = float(rng.normal(0.0, 0.12)) if along_street else _uniform(rng, (-math.pi, math.pi))
    if not open_faces[0] or not open_faces[1]:
        upper[1] = max(upper[1], height + _uniform(rng, (1.0, 6.0)))
    return Camera(
        position=np.array([cam_x, height, 0.0], np.float32),
        yaw=yaw,
        pitch=pitch,
        roll=float(rng.normal(0.0, 0.04 * jitter)),
        hfov=hfov,
    )


def _outdoor_light(
    rng, stats: SceneStatistics, materials: MaterialSampler, ground: Material
) -> tuple[Atmosphere, Lighting]:
    """Clear or overcast sky with optional haze, and the sun that matches it."""
    overcast = rng.random() < 0.25
    sky = _sky(rng, overcast)
    if stats.fog and rng.random() < 0.7:
        sky.fog_distance = math.exp(_uniform(rng, (math.log(80.0), math.log(1500.0))))
    sky.cloud_tile = materials.tile_from(("clouds",))
    return sky, _sun(rng, overcast, sky, np.asarray(ground.color_b))


def _place_outdoor_objects(
    b: _Builder,
    camera: Camera,
    lower: np.ndarray,
    upper: np.ndarray,
    strip: tuple[float, float] | None,
    canyon: bool,
) -> None:
    """Fill the primitive budget with what stands in view: cars and clutter on the road; trees,
    poles, rocks, cars, buildings (not in a canyon) and other objects beside it."""
    rng = b.rng
    attempts = 0
    while b.left > 0 and attempts < 60:
        attempts += 1
        x, z = _view_point(rng, camera, 3.0, 70.0)
        if not lower[0] + 0.5 < x < upper[0] - 0.5:
            continue
        on_road = strip is not None and strip[0] < x < strip[1]
        u = rng.random()
        if on_road and u < 0.6 and b.left >= 2:
            _car(b, x, z, heading=math.pi * _index(rng, 2) + 0.05 * (rng.random() - 0.5))
        elif on_road:
            _generic_object(b, x, z, _uniform(rng, (0.2, 0.8)))
        elif u < 0.3 and b.left >= 2:
            _tree(b, x, z)
        elif u < 0.4:
            _pole(b, x, z)
        elif u < 0.55:
            _rock_or_bush(b, x, z)
        elif u < 0.65 and b.left >= 2:
            _car(b, x, z, heading=_uniform(rng, (0, 2 * math.pi)))
        elif u < 0.75 and not canyon:
            _building(b, camera)
        else:
            _generic_object(b, x, z, _uniform(rng, (0.3, 1.5)))


def _building(b: _Builder, camera: Camera) -> None:
    """A box-shaped building in the distance."""
    rng = b.rng
    bx, bz = _view_point(rng, camera, 25.0, 150.0)
    size = (_uniform(rng, (3, 15)), _uniform(rng, (3, 20)), _uniform(rng, (3, 15)))
    b.rest(
        "box",
        bx,
        bz,
        size,
        rotation_y(_uniform(rng, (0, math.pi))),
        material=b.materials("facade"),
    )


def _car(b: _Builder, x: float, z: float, heading: float) -> None:
    rng = b.rng
    rot = rotation_y(heading)
    paint = b.materials("car")
    w, h, l = _uniform(rng, (0.8, 1.0)), _uniform(rng, (0.3, 0.5)), _uniform(rng, (1.9, 2.5))
    clearance = _uniform(rng, (0.15, 0.3))
    b.rest("box", x, z, (w, h, l), rot, base=clearance, material=paint)
    glass = Material(
        color_b=tuple(float(c) for c in sample_color(rng, "dark")), specular=0.8, shininess=64.0
    )
    offset = rot @ np.array([0.0, 0.0, _uniform(rng, (-0.4, 0.1)) * l])
    b.rest(
        "box",
        x + offset[0],
        z + offset[2],
        (w * 0.85, _uniform(rng, (0.25, 0.38)), l * _uniform(rng, (0.4, 0.6))),
        rot,
        base=clearance + 2 * h,
        material=glass,
    )


def _tree(b: _Builder, x: float, z: float) -> None:
    rng = b.rng
    trunk_h = _uniform(rng, (0.8, 3.0))
    r = _uniform(rng, (0.08, 0.3))
    b.rest("cylinder", x, z, (r, trunk_h, r), np.eye(3), material=b.materials("bark"), sink=0.05)
    crown = np.array([_uniform(rng, (1.0, 3.0)), _uniform(rng, (1.2, 4.0)), 0.0], np.float32)
    crown[2] = crown[0] * _uniform(rng, (0.8, 1.2))
    b.add(
        "ellipsoid",
        (x, 2 * trunk_h + crown[1] * 0.7, z),
        crown,
        rotation_y(_uniform(rng, (0, math.pi))),
        b.materials("foliage"),
    )


def _pole(b: _Builder, x: float, z: float) -> None:
    r = _uniform(b.rng, (0.04, 0.15))
    b.rest(
        "cylinder",
        x,
        z,
        (r, _uniform(b.rng, (1.0, 4.5)), r),
        np.eye(3),
        material=b.materials("object"),
    )


def _rock_or_bush(b: _Builder, x: float, z: float) -> None:
    rng = b.rng
    size = rng.uniform(0.3, 1.5, 3) * np.array([1.0, _uniform(rng, (0.4, 0.9)), 1.0])
    category = "rock" if rng.random() < 0.5 else "foliage"
    b.rest(
        "ellipsoid",
        x,
        z,
        size,
        random_rotation(rng) if category == "rock" else rotation_y(_uniform(rng, (0, 3))),
        material=b.materials(category),
        sink=float(size.min()) * _uniform(rng, (0.0, 0.4)),
    )


def _room(
    rng, stats: SceneStatistics, materials: MaterialSampler, width, depth, height
) -> Environment:
    lower = np.array([-width / 2, 0.0, -depth / 2], np.float32)
    upper = np.array([width / 2, height, depth / 2], np.float32)
    wall = materials("wall")
    faces = [wall if rng.random() < 0.75 else materials("wall") for _ in range(6)]
    faces[2] = materials("ceiling")
    faces[3] = materials("floor")
    strip, strip_material = None, Material()
    if rng.random() < 0.2:  # a rug
        x0 = _uniform(rng, (lower[0], 0.0))
        strip = (x0, x0 + _uniform(rng, (1.0, width / 2)))
        strip_material = materials("object")
    return Environment(lower, upper, (False,) * 6, tuple(faces), strip, strip_material)


def _point_light(rng, room: Environment, warm: bool = True) -> Lighting:
    lo, hi = room.lower, room.upper
    position = np.array(
        [
            _uniform(rng, (lo[0] * 0.6, hi[0] * 0.6)),
            hi[1] - _uniform(rng, (0.2, 0.6)),
            _uniform(rng, (lo[2] * 0.6, hi[2] * 0.6)),
        ],
        np.float32,
    )
    tint = hsv_to_linear(
        _uniform(rng, (0.05, 0.15)) if warm else _uniform(rng, (0.5, 0.65)),
        _uniform(rng, (0.0, 0.35)),
        1.0,
    )
    strength = _uniform(rng, (2.0, 5.0))
    ambient = _uniform(rng, (0.2, 0.45))
    wall = np.asarray(room.materials[0].color_b)
    floor = np.asarray(room.materials[3].color_b)
    return Lighting(
        color=tuple(float(c) for c in tint * strength),
        position=position,
        falloff=_uniform(rng, (2.0, 5.0)),
        ambient_sky=tuple(float(c) for c in (0.5 * wall + 0.5) * tint * ambient),
        ambient_ground=tuple(float(c) for c in floor * tint * ambient * 0.6),
    )


def _against_wall(b: _Builder, room: Environment, camera: Camera) -> None:
    """Cabinet, shelf, wardrobe or sofa with its back to a wall the camera can see."""
    rng = b.rng
    lo, hi = room.lower, room.upper
    wall = (0, 1, 4, 4)[_index(rng, 4)]
    w, h, d = _uniform(rng, (0.3, 1.2)), _uniform(rng, (0.2, 1.1)), _uniform(rng, (0.15, 0.45))
    if rng.random() < 0.3:  # sofa / bench: low and wide
        w, h, d = _uniform(rng, (0.8, 1.3)), _uniform(rng, (0.2, 0.4)), _uniform(rng, (0.35, 0.5))
    if wall == 4:
        x, z, rot = _uniform(rng, (lo[0] + w, hi[0] - w)), hi[2] - d - 0.01, np.eye(3)
    else:
        sign = 1 if wall == 0 else -1
        x = (hi[0] if sign > 0 else lo[0]) - sign * (d + 0.01)
        z = _uniform(rng, (lo[2] + w, hi[2] - w))
        rot = rotation_y(math.pi / 2)
    # world half extents of the footprint; keep clear of the camera
    half_x, half_z = (w, d) if wall == 4 else (d, w)
    cam = camera.position
    if abs(cam[0] - x) < half_x + 0.3 and abs(cam[2] - z) < half_z + 0.3:
        return
    b.rest("box", x, z, (w, h, d), rot, material=b.materials("furniture"))
    b.supports.append((x, z, min(w, d) * 0.8, 2 * h))


def _table(
    b: _Builder, x: float, z: float, top_height: float, half_w: float, half_d: float, yaw: float
) -> None:
    rng = b.rng
    rot = rotation_y(yaw)
    thickness = _uniform(rng, (0.015, 0.035))
    top = b.materials("table")
    b.add("box", (x, top_height - thickness, z), (half_w, thickness, half_d), rot, top)
    b.supports.append((x, z, min(half_w, half_d) * 0.9, top_height))
    if b.left >= 4:
        leg = b.materials("furniture") if rng.random() < 0.5 else top
        cyl = rng.random() < 0.5
        r = _uniform(rng, (0.02, 0.04))
        leg_h = (top_height - 2 * thickness) / 2
        for sx, sz in ((-1, -1), (1, -1), (-1, 1), (1, 1)):
            offset = rot @ np.array([sx * (half_w - 2 * r), 0.0, sz * (half_d - 2 * r)])
            b.add(
                "cylinder" if cyl else "box",
                (x + offset[0], leg_h, z + offset[2]),
                (r, leg_h, r),
                rot,
                leg,
            )


def _indoor(
    rng, stats: SceneStatistics, materials: MaterialSampler, jitter: float
) -> tuple[Scene, Camera]:
    width, depth, height = (
        _uniform(rng, (3.0, 9.0)),
        _uniform(rng, (3.5, 12.0)),
        _uniform(rng, (2.3, 3.4)),
    )
    room = _room(rng, stats, materials, width, depth, height)
    hfov = math.radians(_uniform(rng, stats.fov_deg))
    cam = np.array(
        [
            _uniform(rng, (-width / 3, width / 3)),
            float(np.clip(rng.normal(1.4, 0.25 * jitter), 0.6, height - 0.3)),
            room.lower[2] + _uniform(rng, (0.3, depth * 0.35)),
        ],
        np.float32,
    )
    camera = Camera(
        position=cam,
        yaw=float(rng.normal(0.0, 0.35)),
        pitch=float(np.clip(rng.normal(-0.15, 0.15 * jitter), -0.7, 0.25)),
        roll=float(rng.normal(0.0, 0.04 * jitter)),
        hfov=hfov,
    )
    light = _point_light(rng, room, warm=rng.random() < 0.7)
    b = _Builder(rng, materials, _object_count(rng, stats))
    lo, hi = room.lower, room.upper

    def free_spot(margin: float) -> tuple[float, float] | None:
        for _ in range(8):
            x, z = _view_point(rng, camera, 0.8, depth * 1.2)
            inside = lo[0] + margin < x < hi[0] - margin and lo[2] + margin < z < hi[2] - margin
            if inside and math.hypot(x - cam[0], z - cam[2]) > margin + 0.4:
                return x, z
        return None

    for _ in range(_index(rng, 4)):
        if b.left >= 1:
            _against_wall(b, room, camera)
    if b.left >= 5 and rng.random() < 0.6:
        half_w, half_d = _uniform(rng, (0.4, 1.0)), _uniform(rng, (0.3, 0.6))
        spot = free_spot(max(half_w, half_d) + 0.1)
        if spot:
            _table(
                b,
                spot[0],
                spot[1],
                _uniform(rng, (0.45, 0.8)),
                half_w,
                half_d,
                _uniform(rng, (0, math.pi)),
            )
    if rng.random() < 0.4 and b.left >= 1:  # a picture or a door flat on the far wall
        pw, ph = _uniform(rng, (0.2, 0.8)), _uniform(rng, (0.2, 1.0))
        door = rng.random() < 0.4
        if door:
            pw, ph = 0.45, 1.02
        y = ph + 0.002 if door else _uniform(rng, (1.2, height - ph - 0.1))
        b.add(
            "box",
            (_uniform(rng, (lo[0] + pw, hi[0] - pw)), y, hi[2] - 0.02),
            (pw, ph, 0.025),
            np.eye(3),
            materials("object" if not door else "furniture", fit_probability=0.5),
        )
    attempts = 0
    while b.left > 0 and attempts < 40:
        attempts += 1
        scale = _uniform(rng, (0.05, 0.35))
        place = _on_some_support(b, scale) if rng.random() < 0.4 else None
        if place:
            _generic_object(b, place[0], place[1], scale, base=place[2], free=0.1)
            continue
        spot = free_spot(scale * 2 + 0.05)
        if spot:
            _generic_object(b, spot[0], spot[1], _uniform(rng, (0.1, 0.5)), free=0.2)
    return Scene(room, b.primitives, light, Atmosphere(), "indoor"), camera


def _tabletop(
    rng, stats: SceneStatistics, materials: MaterialSampler, jitter: float
) -> tuple[Scene, Camera]:
    width, depth, height = (
        _uniform(rng, (3.0, 8.0)),
        _uniform(rng, (3.0, 8.0)),
        _uniform(rng, (2.4, 3.2)),
    )
    room = _room(rng, stats, materials, width, depth, height)
    half_w, half_d = _uniform(rng, (0.5, 1.2)), _uniform(rng, (0.35, 0.7))
    top = _uniform(rng, (0.68, 0.78))
    yaw = float(rng.normal(0.0, 0.3))
    table_rot = rotation_y(yaw)
    b = _Builder(rng, materials, _object_count(rng, stats))
    if b.left >= 1:
        _table(b, 0.0, 0.0, top, half_w, half_d, yaw)
    b.supports.clear()
    # camera at the near edge of the table, looking down onto it
    view_yaw = yaw + float(rng.normal(0.0, 0.25))
    back = half_d + _uniform(rng, (0.05, 0.4))
    cam_xz = table_rot @ np.array([_uniform(rng, (-0.5, 0.5)) * half_w, 0.0, -back])
    above = float(np.clip(rng.normal(0.5, 0.15 * jitter), 0.2, 1.1))
    camera = Camera(
        position=np.array([cam_xz[0], top + above, cam_xz[2]], np.float32),
        yaw=view_yaw,
        pitch=-float(np.clip(rng.normal(0.85, 0.2 * jitter), 0.35, 1.35)),
        roll=float(rng.normal(0.0, 0.05 * jitter)),
        hfov=math.radians(_uniform(rng, stats.fov_deg)),
    )
    light = _point_light(rng, room, warm=rng.random() < 0.5)
    attempts = 0
    while b.left > 0 and attempts < 60:
        attempts += 1
        lx, lz = _uniform(rng, (-0.9, 0.9)) * half_w, _uniform(rng, (-0.9, 0.9)) * half_d
        world = table_rot @ np.array([lx, 0.0, lz])
        _table_object(b, float(world[0]), float(world[2]), top)
    return Scene(room, b.primitives, light, Atmosphere(), "tabletop"), camera


def _table_object(b: _Builder, x: float, z: float, base: float) -> None:
    """Cans, cups, bottles, bowls, boxes, fruit: what sits on tables in RGB-D datasets."""
    rng = b.rng
    u = rng.random()
    material = b.materials("object", fit_probability=0.4)
    upright = rotation_y(_uniform(rng, (0, 2 * math.pi)))
    if u < 0.4:
        r = _uniform(rng, (0.025, 0.09))
        h = _uniform(rng, (0.02, 0.15)) if rng.random() < 0.3 else _uniform(rng, (0.04, 0.13))
        rot = upright if rng.random() < 0.8 else upright @ rotation_x(math.pi / 2)
        b.rest("cylinder", x, z, (r, h, r), rot, base, material)
    elif u < 0.75:
        size = (
            _uniform(rng, (0.02, 0.12)),
            _uniform(rng, (0.02, 0.15)),
            _uniform(rng, (0.02, 0.08)),
        )
        rot = upright if rng.random() < 0.75 else _object_rotation(rng, 0.5)
        b.rest("box", x, z, size, rot, base, material)
    else:
        r = _uniform(rng, (0.025, 0.07))
        size = np.array([r, r * _uniform(rng, (0.7, 1.2)), r * _uniform(rng, (0.8, 1.1))])
        b.rest("ellipsoid", x, z, size, upright, base, material)


def sample_scene(
    rng: np.random.Generator, stats: SceneStatistics, bank: TextureBank
) -> tuple[Scene, Camera]:
    """Draw one scene and the camera that views it."""
    materials = MaterialSampler(rng, bank, stats)
    u = rng.random()
    jitter = stats.camera_jitter
    if u < stats.indoor_fraction:
        return _indoor(rng, stats, materials, jitter)
    if u < stats.indoor_fraction + stats.tabletop_fraction:
        return _tabletop(rng, stats, materials, jitter)
    return _outdoor(rng, stats, materials, jitter)
