"""The report people read: a self-contained HTML page and a markdown summary.

Pictures are embedded as base64 PNG data URIs, so the HTML is one file that can be mailed,
attached to a run or opened from a DVC cache without its neighbours.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from depth_core.viz import colorize_disparity

DISPLAY_MIN = 192  # small images are enlarged (nearest neighbour) to at least this size
DISPLAY_MAX = 480  # large images are reduced to at most this size
PAIR_COLOURS = (
    (255, 59, 48),
    (0, 199, 190),
    (255, 204, 0),
    (175, 82, 222),
    (52, 199, 89),
    (255, 149, 0),
    (0, 122, 255),
    (255, 45, 85),
)


def png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(
        buf, format="PNG", optimize=True
    )
    return buf.getvalue()


def data_uri(rgb: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(rgb)).decode("ascii")


def display_scale(height: int, width: int, lo: int = DISPLAY_MIN, hi: int = DISPLAY_MAX) -> float:
    """Integer enlargement for small images (crisp pixels), reduction for large ones."""
    longest = max(height, width)
    if longest < lo:
        return float(int(np.ceil(lo / longest)))
    if longest > hi:
        return hi / longest
    return 1.0


def resize(rgb: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return np.asarray(rgb, np.uint8)
    h, w = rgb.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    resample = Image.NEAREST if scale > 1 else Image.BILINEAR
    return np.asarray(Image.fromarray(np.asarray(rgb, np.uint8)).resize(size, resample))


def draw_pairs(
    photo: np.ndarray,
    point1: np.ndarray,
    point2: np.ndarray,
    closer: np.ndarray,
    scale: float = 1.0,
) -> np.ndarray:
    """Pairs as coloured segments on the (resized) photo; the point judged closer (`closer`
    1 or 2) gets a filled dot, the other an open ring."""
    canvas = Image.fromarray(resize(photo, scale))
    draw = ImageDraw.Draw(canvas)
    radius = max(2.0, 2.5 * min(scale, 2.0))
    for i in range(len(point1)):
        colour = PAIR_COLOURS[i % len(PAIR_COLOURS)]
        (h1, w1), (h2, w2) = point1[i], point2[i]
        a = ((w1 + 0.5) * scale, (h1 + 0.5) * scale)
        b = ((w2 + 0.5) * scale, (h2 + 0.5) * scale)
        draw.line([a, b], fill=colour, width=2)
        for point, is_closer in ((a, closer[i] == 1), (b, closer[i] == 2)):
            box = [point[0] - radius, point[1] - radius, point[0] + radius, point[1] + radius]
            draw.ellipse(box, fill=colour if is_closer else None, outline=colour, width=2)
    return np.asarray(canvas)


@dataclass
class ImagePanel:
    """Everything the report shows for one image (pictures already at display size)."""

    image_id: str
    photo: np.ndarray
    expert_depths: dict[str, np.ndarray]
    disagreement: np.ndarray
    pairs_drawn: np.ndarray
    stats: dict[str, float | int] = field(default_factory=dict)


def build_panel(
    image_id: str,
    image: np.ndarray,
    expert_maps: Mapping[str, np.ndarray],
    disagreement_rgb: np.ndarray,
    point1: np.ndarray,
    point2: np.ndarray,
    closer: np.ndarray,
    stats: Mapping[str, float | int] | None = None,
    max_pairs: int = 24,
) -> ImagePanel:
    """Pictures for one image: photo, each expert's colourised disparity, the disagreement
    map and (up to max_pairs) disagreement pairs drawn on the photo."""
    scale = display_scale(*image.shape[:2])
    return ImagePanel(
        image_id=str(image_id),
        photo=resize(image, scale),
        expert_depths={n: resize(colorize_disparity(m), scale) for n, m in expert_maps.items()},
        disagreement=resize(disagreement_rgb, scale),
        pairs_drawn=draw_pairs(
            image, point1[:max_pairs], point2[:max_pairs], closer[:max_pairs], scale
        ),
        stats=dict(stats or {}),
    )


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, (float, np.floating)):
        return f"{value:.3f}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def expert_rows(metrics: Mapping, names: Sequence[str]) -> tuple[list[str], list[list]]:
    """Per-expert table: accuracy (if ground truth), accuracy on disagreement pairs,
    dissent from the majority, lone dissent, ties."""
    has_gt = "n_pairs_gt" in metrics
    header = ["expert"]
    if has_gt:
        header += ["accuracy", "accuracy on disagreements"]
    header += ["dissent from majority", "lone dissent", "ties"]
    rows = []
    for n in names:
        row = [n]
        if has_gt:
            row += [metrics.get(f"accuracy/{n}"), metrics.get(f"accuracy_disagreement/{n}")]
        row += [
            metrics.get(f"dissent_rate/{n}"),
            metrics.get(f"lone_dissent_rate/{n}"),
            metrics.get(f"tie_rate/{n}"),
        ]
        rows.append(row)
    return header, rows


def summary_rows(metrics: Mapping) -> list[list]:
    keys = [
        ("experts", "n_experts"),
        ("images", "n_images"),
        ("pairs", "n_pairs"),
        ("consistent pairs", "n_consistent"),
        ("disagreement pairs", "n_disagreement"),
        ("agreement rate", "agreement_rate"),
        ("mean disagreement map", "mean_disagreement"),
        ("pairs with ground truth", "n_pairs_gt"),
        ("accuracy, majority vote", "accuracy_majority"),
        ("accuracy, consistent pairs", "accuracy_consistent"),
        ("accuracy, disagreement pairs (majority)", "accuracy_disagreement"),
    ]
    return [[label, metrics[key]] for label, key in keys if key in metrics]


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}
.matrix td{min-width:4em}
.panel{border-top:1px solid #ddd;padding:.8em 0}
.row{display:flex;flex-wrap:wrap;gap:.6em}
figure{margin:0}
figcaption{font-size:.8em;color:#555;text-align:center}
.note{color:#555;font-size:.9em}
"""


def render_html(
    metrics: Mapping,
    expert_names: Sequence[str],
    agreement: np.ndarray,
    panels: Sequence[ImagePanel],
    title: str = "Expert agreement report",
    kind_rates: Mapping[str, tuple[int, float]] | None = None,
) -> str:
    """The whole report as one HTML string (sections: summary, experts, confusion, images)."""
    names = list(expert_names)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        '<section id="summary"><h2>Summary</h2>',
        (
            "<p class='note'>A pair is <b>consistent</b> when every expert judges the same point "
            "closer (larger disparity = closer) and a <b>disagreement</b> when any expert differs; "
            "disagreement pairs form the review queue (DA-2K format), consistent pairs the "
            "auto-labels. Accuracies use ground-truth pairs only; a tie counts as wrong.</p>"
        ),
        _table(["", "value"], summary_rows(metrics)),
    ]
    if kind_rates:
        rows = [[k, n, rate] for k, (n, rate) in kind_rates.items()]
        parts.append("<h3>Agreement by pair kind</h3>")
        parts.append(_table(["pair kind", "pairs", "agreement rate"], rows))
    parts.append("</section>")
    header, rows = expert_rows(metrics, names)
    parts += ['<section id="experts"><h2>Experts</h2>', _table(header, rows), "</section>"]
    matrix_rows = [[n] + [float(v) for v in agreement[i]] for i, n in enumerate(names)]
    parts += [
        '<section id="confusion"><h2>Per-expert confusion</h2>',
        (
            "<p class='note'>Fraction of pairs on which two experts cast the same vote. "
            "<i>Lone dissent</i> (table above): the expert differs while all others agree.</p>"
        ),
        _table([""] + names, matrix_rows, cls="matrix"),
        "</section>",
        '<section id="images"><h2>Images</h2>',
        (
            "<p class='note'>Most contested images first. Depth: warm = near. Disagreement map: "
            "white = experts agree, dark red = they differ as much as the scene's depth varies. "
            "Pairs: filled dot = the point the majority judges closer.</p>"
        ),
    ]
    for panel in panels:
        stats = ", ".join(f"{k} {_fmt(v)}" for k, v in panel.stats.items())
        figures = [("photo", panel.photo)]
        figures += [(f"depth: {n}", rgb) for n, rgb in panel.expert_depths.items()]
        figures += [
            ("disagreement map", panel.disagreement),
            ("disagreement pairs", panel.pairs_drawn),
        ]
        parts.append(f'<div class="panel"><h3>{html.escape(panel.image_id)}</h3>')
        parts.append(f"<p class='note'>{html.escape(stats)}</p><div class='row'>")
        for caption, rgb in figures:
            parts.append(
                f"<figure><img src='{data_uri(rgb)}' alt='{html.escape(caption)}'>"
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
        parts.append("</div></div>")
    parts.append("</section></body></html>")
    return "\n".join(parts)


def _md_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(
    metrics: Mapping,
    expert_names: Sequence[str],
    thumbnail: np.ndarray | None = None,
    title: str = "Expert agreement",
) -> str:
    """A short summary for the Dagster UI: key numbers, the expert table, one small picture."""
    header, rows = expert_rows(metrics, list(expert_names))
    parts = [
        f"## {title}",
        "",
        _md_table(["", "value"], summary_rows(metrics)),
        "",
        _md_table(header, rows),
        "",
    ]
    if thumbnail is not None:
        parts += [f"![most contested image]({data_uri(thumbnail)})", ""]
    parts.append(
        "Disagreement pairs: `review_queue.json` (DA-2K format, needs human review); "
        "consistent pairs: `auto_labels.json`; full report: `report.html`."
    )
    return "\n".join(parts) + "\n"
