"""Procedural RGB-D scenes: the default labeled data and the stand-in for the target domain.

The renderer draws random outdoor, indoor and tabletop scenes and ray-casts them into images
with exact z-depth, so the pipeline runs end to end without downloading a dataset:
`render.render_batch` / `render.ShardRenderer` are the entry points, `scenes` describes and
samples scenes, `raycast` intersects rays with them, `textures` and `shading` colour the hits and
`camera_effects` degrades target-domain images like a real camera. Dataset storage lives in
`depth_core.data`.
"""
