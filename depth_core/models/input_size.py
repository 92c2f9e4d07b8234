"""The working resolution a model predicts at, for an image of any size.

`depth_core.inference` resizes depth-distill models' images to it. Foreign teachers (a Hugging
Face folder, the authors' .pth files) resize their own way instead
(`depth_core.models.image_processing`).
"""

from __future__ import annotations


def inference_size(
    height: int, width: int, img_size: int, multiple: tuple[int, int]
) -> tuple[int, int]:
    """(h, w) with the longer side ~ ``img_size``, aspect kept, each a multiple of ``multiple``."""
    scale = img_size / max(height, width)
    mh, mw = multiple
    return (max(mh, round(height * scale / mh) * mh), max(mw, round(width * scale / mw) * mw))
