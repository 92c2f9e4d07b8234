from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from depth_core.voting.report import (
    build_panel,
    data_uri,
    display_scale,
    draw_pairs,
    render_html,
    render_markdown,
)


def _decode(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


def test_data_uri_round_trip():
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(_decode(data_uri(rgb)), rgb)


def test_display_scale():
    assert display_scale(32, 40) == 5.0  # small images grow by an integer factor
    assert display_scale(300, 200) == 1.0
    assert display_scale(960, 100) == pytest.approx(0.5)


def test_draw_pairs_marks_the_closer_point_filled():
    photo = np.zeros((20, 20, 3), np.uint8)
    out = draw_pairs(photo, np.array([[2, 2]]), np.array([[17, 17]]), np.array([1]), scale=4.0)
    assert out.shape == (80, 80, 3)
    # centres at (10, 10) and (70, 70); (+2, -2) from a centre is off the segment, inside the dot
    assert out[12, 8].any()  # filled dot on the closer point
    assert not out[72, 68].any()  # open ring around the other point
    assert out[40, 40].any()  # the segment between them


def _panel(names, rng):
    image = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
    maps = {n: rng.random((16, 20)).astype(np.float32) for n in names}
    return build_panel(
        "scene/img 1.png",
        image,
        maps,
        np.full((16, 20, 3), 255, np.uint8),
        np.array([[1, 1], [5, 5]]),
        np.array([[10, 12], [14, 2]]),
        np.array([1, 2]),
        {"pairs": 10, "agreement rate": 0.5},
    )


@pytest.mark.parametrize("n_experts", [2, 3, 4])
def test_html_has_every_section_and_picture(n_experts):
    rng = np.random.default_rng(n_experts)
    names = [f"model<{i}>" for i in range(n_experts)]
    metrics = {
        "n_experts": n_experts,
        "n_pairs": 10,
        "agreement_rate": 0.7,
        "n_pairs_gt": 8,
        "accuracy_majority": 0.9,
        **{f"accuracy/{n}": 0.8 for n in names},
    }
    panels = [_panel(names, rng), _panel(names, rng)]
    page = render_html(
        metrics,
        names,
        np.eye(n_experts),
        panels,
        kind_rates={"random": (6, 0.8), "same_row": (4, 0.5)},
    )
    for section in ("summary", "experts", "confusion", "images"):
        assert f'id="{section}"' in page
    assert "model&lt;0&gt;" in page and "model<0>" not in page  # names are escaped
    uris = re.findall(r"src='(data:image/png;base64,[^']+)'", page)
    assert len(uris) == 2 * (3 + n_experts)  # photo, experts, map, pairs per image
    assert _decode(uris[0]).shape == (16 * 10, 20 * 10, 3)  # enlarged: ceil(192 / 20) = 10
    assert "0.800" in page and "same_row" in page
    assert "http" not in page  # self-contained


def test_markdown_summary():
    names = ["teacher", "student"]
    metrics = {
        "n_experts": 2,
        "n_pairs": 4,
        "agreement_rate": 0.25,
        "dissent_rate/teacher": 0.5,
        "dissent_rate/student": 0.25,
    }
    text = render_markdown(metrics, names, np.zeros((4, 4, 3), np.uint8))
    assert "| agreement rate | 0.250 |" in text
    assert "| teacher |" in text and "accuracy" not in text.split("review_queue")[0]
    assert "](data:image/png;base64," in text
