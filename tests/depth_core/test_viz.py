"""Colourised disparity: chunked colouring gives the same picture as one pass."""

import numpy as np

from depth_core import viz


def test_chunked_colouring_matches_one_pass(monkeypatch):
    rng = np.random.default_rng(0)
    disparity = rng.uniform(0.0, 2.0, (37, 23)).astype(np.float32)
    disparity[3, 4] = np.nan
    mask = rng.random((37, 23)) > 0.1
    whole = viz.colorize_disparity(disparity, mask)
    monkeypatch.setattr(viz, "_CHUNK_PIXELS", 50)  # two rows per step
    assert np.array_equal(viz.colorize_disparity(disparity, mask), whole)
    assert (whole[~mask] == 0).all() and whole[mask].any()
