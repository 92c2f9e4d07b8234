"""Light transport for the procedural renderer, in linear RGB.

Direct light is Lambertian (plus a Blinn-Phong highlight on glossy materials) from one sun or
point light, gated by the shadow test; indirect light is a hemispherical ambient term (sky
colour from above, ground bounce from below) darkened in room corners. Distance haze blends
far surfaces into the horizon colour (atmospheric perspective, a strong outdoor depth cue).
Exposure is metered per image and a soft shoulder keeps highlights from clipping hard.

Layout as in `raycast`: per-pixel vectors (B, 3, P), scalars (B, P), per-image values (B, 3, 1).
"""

from __future__ import annotations

import functools

import torch

from depth_core.synth.raycast import EnvironmentHit, dot, length
from depth_core.synth.textures import TextureBank, linear_to_srgb


def direct_and_ambient(
    albedo: torch.Tensor,
    normal: torch.Tensor,
    view: torch.Tensor,
    to_light: torch.Tensor,
    light_color: torch.Tensor,
    visibility: torch.Tensor,
    ambient_sky: torch.Tensor,
    ambient_ground: torch.Tensor,
    occlusion: torch.Tensor,
    specular: torch.Tensor,
    shininess: torch.Tensor,
) -> torch.Tensor:
    """Outgoing radiance (B, 3, P) of surface points.

    view: unit ray directions (camera -> point); to_light: unit directions point -> light;
    visibility (B, P): shadow test result times distance falloff; occlusion (B, P) in [0, 1]
    scales the ambient term only.
    """
    cos_light = dot(normal, to_light).clamp(min=0.0)
    irradiance = light_color * (cos_light * visibility).unsqueeze(1)
    up = 0.5 + 0.5 * normal[:, 1:2]
    ambient = (ambient_ground + (ambient_sky - ambient_ground) * up) * occlusion.unsqueeze(1)
    half = to_light - view
    half = half / length(half).clamp(min=1e-9).unsqueeze(1)
    cos_half = dot(normal, half).clamp(min=0.0)
    gloss = cos_half / (shininess * (1.0 - cos_half) + cos_half + 1e-9)  # Schlick's cos^n
    highlight = light_color * (specular * gloss * visibility * torch.sign(cos_light)).unsqueeze(1)
    return albedo * (irradiance + ambient) + highlight


def room_corner_occlusion(
    points: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, exit: EnvironmentHit
) -> torch.Tensor:
    """(B, P) ambient darkening of environment surfaces near the other faces (room corners,
    the foot of walls): a cheap stand-in for the indirect shadowing real rooms show.
    Faces that are far away (open sky) have no effect."""
    nearest = None
    for face in range(6):
        axis = face // 2
        bound = (lower if face % 2 else upper)[:, axis : axis + 1]
        gap = (bound - points[:, axis]).abs() + exit.face_mask(face) * 1e9  # not the face itself
        nearest = gap if nearest is None else torch.minimum(nearest, gap)
    return 1.0 - 0.45 * torch.exp(-nearest / 0.35)


def sky_radiance(
    directions: torch.Tensor,
    zenith: torch.Tensor,
    horizon: torch.Tensor,
    sun_direction: torch.Tensor,
    sun_color: torch.Tensor,
    clouds: torch.Tensor,
    cloud_tile: torch.Tensor,
    cloud_scale: torch.Tensor,
    pixel_angle: torch.Tensor,
    bank: TextureBank,
) -> torch.Tensor:
    """Sky colour along unit `directions` (n, 3, m): horizon-to-zenith gradient, a sun glow, and
    clouds from a noise tile projected on a plane high above (they shrink towards the horizon).

    Per-image values are (n, 3, 1) colours/directions and (n, 1) scalars; a zero
    `sun_direction` means no sun (indoor); `pixel_angle` (1 / focal length) picks the cloud
    texture's mip level.
    """
    dy = directions[:, 1]
    elevation = dy.clamp(min=0.0)
    blend = (1.0 - (1.0 - elevation) ** 3).unsqueeze(1)
    color = horizon + (zenith - horizon) * blend
    toward_sun = dot(directions, sun_direction).clamp(min=0.0)
    color = color + sun_color * (0.6 * toward_sun**256 + 0.08 * toward_sun**8).unsqueeze(1)
    if bool((clouds > 0).any()):
        height = dy.clamp(min=0.02)
        u = directions[:, 0] / height * cloud_scale
        v = directions[:, 2] / height * cloud_scale
        lod = torch.log2((cloud_scale * bank.tile_size * pixel_angle / height**2).clamp(min=1.0))
        tile = cloud_tile.expand_as(u)
        density = bank.sample(tile.reshape(-1), u.reshape(-1), v.reshape(-1), lod.reshape(-1))[
            0
        ].view_as(u)
        cover = ((density - (1.0 - clouds)) * 4.0).clamp(0.0, 1.0) * clouds.clamp(max=1.0)
        cover = cover * (elevation / 0.08).clamp(max=1.0)  # clouds thin out at the horizon
        cloud_color = horizon.amax(1, keepdim=True) * 1.1 * (0.75 + 0.25 * density.unsqueeze(1))
        color = color + (cloud_color - color) * cover.unsqueeze(1)
    return color


def apply_haze(
    radiance: torch.Tensor,
    distance: torch.Tensor,
    fog_distance: torch.Tensor,
    fog_color: torch.Tensor,
) -> torch.Tensor:
    """Blend towards the haze colour with transmittance exp(-distance / fog_distance)."""
    transmittance = torch.exp(-distance / fog_distance).unsqueeze(1)
    return fog_color + (radiance - fog_color) * transmittance


def expose(radiance: torch.Tensor, percentile: float = 0.95, target: float = 0.85) -> torch.Tensor:
    """Scale each image (B, 3, P) so its `percentile` luminance (metered on every 4th pixel)
    lands at `target`."""
    metered = radiance[:, :, ::4]
    luminance = 0.2126 * metered[:, 0] + 0.7152 * metered[:, 1] + 0.0722 * metered[:, 2]
    count = luminance.shape[1]
    rank = min(count, max(1, round(percentile * count)))
    level = luminance.kthvalue(rank, dim=1).values.clamp(min=1e-4)
    return radiance * (target / level).view(-1, 1, 1)


def smooth_edges(radiance: torch.Tensor, surface: torch.Tensor) -> torch.Tensor:
    """Antialias silhouettes: where a pixel's 4-neighbours show another surface, replace it by
    a [1, 2, 1]^2 blur, as a camera's pixel integrates both sides of an edge.

    radiance (B, H, W, 3) linear, surface (B, H, W) any per-surface id (float).
    """
    padded = torch.nn.functional.pad(surface.unsqueeze(1), (1, 1, 1, 1), mode="replicate").squeeze(
        1
    )
    center = padded[:, 1:-1, 1:-1]
    change = (
        (padded[:, :-2, 1:-1] - center).abs()
        + (padded[:, 2:, 1:-1] - center).abs()
        + (padded[:, 1:-1, :-2] - center).abs()
        + (padded[:, 1:-1, 2:] - center).abs()
    )
    edge = (change * 1e6).clamp(max=1.0).unsqueeze(-1)  # 1 where any neighbour differs
    image = torch.nn.functional.pad(radiance.permute(0, 3, 1, 2), (1, 1, 1, 1), mode="replicate")
    rows = image[:, :, :-2] + 2.0 * image[:, :, 1:-1] + image[:, :, 2:]
    blurred = (rows[..., :-2] + 2.0 * rows[..., 1:-1] + rows[..., 2:]) * (1.0 / 16.0)
    return radiance + edge * (blurred.permute(0, 2, 3, 1) - radiance)


def soft_clip(values: torch.Tensor, knee: float = 0.8) -> torch.Tensor:
    """Identity below `knee`, then a smooth shoulder that approaches 1 (film-like highlights)."""
    room = 1.0 - knee
    over = (values - knee).clamp(min=0.0)
    return values.clamp(max=knee) + room * over / (over + room)


_ENCODE_RANGE = 64.0  # linear values above this all encode to white
_ENCODE_STEPS = 32768  # indexed by sqrt(value): dense in the shadows, where sRGB is steep


@functools.lru_cache(maxsize=4)
def _encode_table(device: str) -> torch.Tensor:
    linear = _ENCODE_RANGE * torch.linspace(0.0, 1.0, _ENCODE_STEPS, dtype=torch.float64) ** 2
    return (linear_to_srgb(soft_clip(linear)) * 255.0 + 0.5).to(torch.uint8).to(device)


def encode_srgb8(linear: torch.Tensor) -> torch.Tensor:
    """Linear radiance -> uint8 sRGB with a soft highlight shoulder (one table lookup per value;
    never more than one code value away from the exact curve)."""
    position = torch.sqrt(linear.clamp(min=0.0) * (1.0 / _ENCODE_RANGE)) * (_ENCODE_STEPS - 1) + 0.5
    return _encode_table(str(linear.device)).take(position.clamp_(max=_ENCODE_STEPS - 1).long())
