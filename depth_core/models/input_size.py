"""The working resolution a model predicts at, for an image of any size.

`depth_core.inference` resizes images to it and a wrapped Hugging Face model
(`transformers_teacher`) resizes to it inside forward, so after inference's resize the model's
own is a no-op; both take it from here, below them.
"""

from __future__ import annotations


def inference_size(
    height: int, width: int, img_size: int, multiple: tuple[int, int]
) -> tuple[int, int]:
    """(h, w) with the longer side ~ ``img_size``, aspect kept, each a multiple of ``multiple``."""
    scale = img_size / max(height, width)
    mh, mw = multiple
    return (max(mh, round(height * scale / mh) * mh), max(mw, round(width * scale / mw) * mw))
