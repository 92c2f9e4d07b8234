"""The benchmark table (one row per model, one column block per benchmark, the published
Depth Anything V2 rows beneath), its JSON form, and a picture of it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from depth_core.zeroshot.published import PUBLISHED, PUBLISHED_SOURCE
from depth_core.zeroshot.suite import DA2K

Results = Mapping[str, Mapping[str, Mapping[str, Any]]]
SUMMARY_KEYS = ("abs_rel", "delta1", "pair_accuracy", "n_pairs", "n_images", "n_skipped")


def summary(results: Results) -> dict[str, dict[str, dict[str, Any]]]:
    """`{model: {benchmark: {"abs_rel", "delta1", "n_images", "n_skipped", ...}}}` without the
    per-file skip lists (those go to the log): what `--json` writes and MLflow logs."""
    return {
        model: {
            bench: {k: v for k, v in values.items() if k in SUMMARY_KEYS or k == "skipped_by_code"}
            for bench, values in per_bench.items()
        }
        for model, per_bench in results.items()
    }


def skip_counts(values: Mapping[str, Any]) -> str:
    """How many files of one benchmark run were skipped, by reason: `2 (corrupt 1, missing 1)`."""
    codes = ", ".join(f"{code} {n}" for code, n in values["skipped_by_code"].items())
    return f"{values['n_skipped']} ({codes})"


def _columns(benchmark: str) -> tuple[tuple[str, str], ...]:
    if benchmark == DA2K:
        return (("pair_accuracy", "acc"),)
    return (("abs_rel", "AbsRel"), ("delta1", "δ1"))


def _cell(values: Mapping[str, Any] | None, key: str) -> str:
    value = None if values is None else values.get(key)
    return "-" if value is None else f"{value:.3f}"


def _count_cell(values: Mapping[str, Any] | None) -> str:
    """Images scored, and how many were skipped when some were: `3 (2 skipped)`, so a
    figure over part of a benchmark never reads as one over all of it."""
    n = None if values is None else values.get("n_images")
    if n is None:
        return "-"
    skipped = values.get("n_skipped") or 0
    return f"{n} ({skipped} skipped)" if skipped else str(n)


def format_table(results: Results, benchmarks: Sequence[str], published: bool = True) -> str:
    """A Markdown pipe table (readable in a terminal, rendered by Dagster and MLflow); the
    `n` columns count the images scored and those skipped."""
    header = ["model"]
    for bench in benchmarks:
        header += [f"{bench} {label}" for _, label in _columns(bench)]
        if bench != DA2K:
            header.append(f"{bench} n")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    rows: list[tuple[str, Mapping[str, Mapping[str, Any]], bool]] = [
        (model, per_bench, True) for model, per_bench in results.items()
    ]
    if published:
        rows += [(model, per_bench, False) for model, per_bench in PUBLISHED.items()]
    for model, per_bench, measured in rows:
        cells = [model]
        for bench in benchmarks:
            values = per_bench.get(bench)
            cells += [_cell(values, key) for key, _ in _columns(bench)]
            if bench != DA2K:
                cells.append(_count_cell(values if measured else None))
        lines.append("| " + " | ".join(cells) + " |")
    if published:
        lines.append("")
        lines.append(f"published rows: {PUBLISHED_SOURCE}")
    return "\n".join(lines)


def plot_benchmarks(results: Results, benchmarks: Sequence[str], path: str | Path) -> Path:
    """Bars of AbsRel (depth benchmarks) and 1 - accuracy (DA-2K) per model, lower is better,
    with the published V2-S figure as a tick where there is one."""
    import numpy as np

    from depth_core.plots import plt, save_figure  # plots selects the Agg backend once

    models = list(results)
    names = [b for b in benchmarks if any(b in results[m] for m in models)]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(names) + 2), 3.6))
    width = 0.8 / max(1, len(models))
    x = np.arange(len(names))

    def error(values: Mapping[str, Any] | None, bench: str) -> float:
        if values is None:
            return np.nan
        if bench == DA2K:
            acc = values.get("pair_accuracy")
            return np.nan if acc is None else 1.0 - acc
        value = values.get("abs_rel")
        return np.nan if value is None else value

    for i, model in enumerate(models):
        heights = [error(results[model].get(b), b) for b in names]
        ax.bar(x + (i - (len(models) - 1) / 2) * width, heights, width, label=Path(model).name)
    reference = next(iter(PUBLISHED.values()))
    for j, bench in enumerate(names):
        value = error(reference.get(bench), bench)
        if np.isfinite(value):
            ax.hlines(value, j - 0.45, j + 0.45, colors="k", linestyles="--", linewidth=1)
    ax.set_xticks(x, [f"{b}\n({'1-acc' if b == DA2K else 'AbsRel'})" for b in names])
    ax.set_ylabel("error (lower is better)")
    ax.set_title("zero-shot benchmarks (dashed: Depth Anything V2-S, published)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, Path(path))
