"""What pretrained encoders and pseudo-labels each add, measured beside the main lineage.

The main lineage (``dvc repro``) gives the pretrained models. This runs, in experiment layouts
that read the main lineage's datasets and never touch DVC-tracked files:

- ``scratch``: teacher, pseudo-labels and students again with every ``model.pretrained``
  cleared (so also the teacher alone with and without pretrained weights);
- ``labeled_only``: each student's own config trained on the labeled data alone for as many
  steps as the student took: the control that shows what the teacher's pseudo-labels add.

Results go to ``reports/ablation/`` as JSON, a Markdown table and a bar chart.
"""

from __future__ import annotations

from pathlib import Path

from depth_core.atomic_io import atomic_path, atomic_write
from orchestration.lineage import paths as L
from orchestration.lineage.files import write_json_atomic
from orchestration.lineage.paths import experiment_paths
from orchestration.lineage.stage_id import StageId
from orchestration.params.schema import Params
from orchestration.stages.base import StageContext, read_metrics
from orchestration.stages.pseudo_labels import stage_pseudo_labels
from orchestration.stages.student import stage_student, train_control
from orchestration.stages.teacher import stage_teacher

VARIANTS = ("scratch", "labeled_only")
KEYS = ("val/target/abs_rel", "val/target/pair_accuracy")
REPORT_DIR = "reports/ablation"


def without_pretraining(params: Params) -> Params:
    """The same lineage with every encoder initialised at random (and nothing frozen)."""

    def cleared(cfg):
        model = cfg.model.model_copy(update={"pretrained": None, "frozen_stages": 0})
        return cfg.model_copy(update={"model": model})

    return params.model_copy(
        update={
            "teacher": cleared(params.teacher),
            "students": {name: cleared(cfg) for name, cfg in params.students.items()},
        }
    )


def run_scratch(params: Params, root: Path, runner: str) -> dict[str, dict]:
    name = "ablation-scratch"
    ctx = StageContext(
        without_pretraining(params), experiment_paths(root, name), runner, experiment=name
    )
    results = {"teacher": stage_teacher(ctx).metrics}
    stage_pseudo_labels(ctx)
    for student in params.students:
        results[StageId.of_student(student).record] = stage_student(ctx, student).metrics
    return results


def run_labeled_only(params: Params, root: Path, runner: str) -> dict[str, dict]:
    name = "ablation-labeled-only"
    ctx = StageContext(params, experiment_paths(root, name), runner, experiment=name)
    main = L.LineagePaths(root=root.resolve())
    results = {}
    for student in params.students:
        steps = read_metrics(main, StageId.of_student(student).record).get("train/steps")
        if not steps:
            raise FileNotFoundError(
                f"ablation labeled_only: metrics/student_{student}.json has no train/steps; "
                "run the main lineage (dvc repro) first"
            )
        results[StageId.of_student(student).record] = train_control(
            ctx, student, int(steps)
        ).metrics
    return results


def run_ablation(params: Params, root: Path, variants=VARIANTS, runner: str = "cli") -> dict:
    """Run the variants, then tabulate them with the main lineage's own metrics."""
    root = Path(root)
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise ValueError(f"unknown ablation variant(s) {unknown}; known: {list(VARIANTS)}")
    main = L.LineagePaths(root=root.resolve())
    table = {"pretrained": {"teacher": read_metrics(main, "teacher")}}
    for student in params.students:
        table["pretrained"][StageId.of_student(student).record] = read_metrics(
            main, StageId.of_student(student).record
        )
    if "scratch" in variants:
        table["scratch"] = run_scratch(params, root, runner)
    if "labeled_only" in variants:
        table["labeled_only"] = run_labeled_only(params, root, runner)
    return write_report(table, root / REPORT_DIR)


def _row_prior(table: dict) -> dict[str, float]:
    teacher = table["pretrained"].get("teacher", {})
    return {key: teacher.get(key.replace("val/", "baseline/")) for key in KEYS}


def write_report(table: dict, out_dir: Path) -> dict:
    """ablation.json (every figure), ablation.md (the README table) and ablation.png."""
    summary = {
        variant: {
            model: {
                **{key: metrics.get(key) for key in KEYS},
                "stage_seconds": metrics.get("stage_seconds"),
                "train_steps": metrics.get("train/steps"),
            }
            for model, metrics in models.items()
        }
        for variant, models in table.items()
    }
    summary["row_prior"] = _row_prior(table)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "ablation.json", summary)
    atomic_write(out_dir / "ablation.md", markdown_table(summary))
    plot_ablation(summary, out_dir / "ablation.png")
    return summary


def _cell(entry: dict | None) -> str:
    if not entry or entry.get(KEYS[0]) is None:
        return "-"
    seconds = entry.get("stage_seconds")
    timing = f" ({seconds:.0f} s)" if seconds else ""
    return f"{entry[KEYS[0]]:.3f} / {entry[KEYS[1]]:.3f}{timing}"


def markdown_table(summary: dict) -> str:
    variants = [v for v in ("pretrained", *VARIANTS) if v in summary]
    models = list(summary["pretrained"])
    head = "| model | " + " | ".join(variants) + " |"
    lines = [
        "Target-set AbsRel / pair accuracy (stage time)",
        "",
        head,
        "|" + "---|" * (len(variants) + 1),
    ]
    for model in models:
        cells = [_cell(summary[v].get(model)) for v in variants]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    prior = summary["row_prior"]
    if prior.get(KEYS[0]) is not None:
        lines.append(
            f"| row prior | {prior[KEYS[0]]:.3f} / {prior[KEYS[1]]:.3f} |"
            + " |" * (len(variants) - 1)
        )
    return "\n".join(lines) + "\n"


def plot_ablation(summary: dict, path: Path) -> Path:
    """Grouped bars of target pair accuracy per model and variant, the row prior as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    variants = [v for v in ("pretrained", *VARIANTS) if v in summary]
    models = list(summary["pretrained"])
    width = 0.8 / len(variants)
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(models), 3.6))
    for i, variant in enumerate(variants):
        values = [(summary[variant].get(m) or {}).get(KEYS[1]) or np.nan for m in models]
        ax.bar(
            np.arange(len(models)) + (i - (len(variants) - 1) / 2) * width,
            values,
            width,
            label=variant,
        )
    prior = summary["row_prior"].get(KEYS[1])
    if prior is not None:
        ax.axhline(prior, color="k", linestyle="--", linewidth=1, label="row prior")
    ax.set_xticks(np.arange(len(models)), models, rotation=15)
    ax.set_ylabel("target pair accuracy")
    ax.set_ylim(0.5, 1.0)
    ax.legend(fontsize=8, ncols=2)
    fig.tight_layout()
    try:
        with atomic_path(path) as temp:
            fig.savefig(temp, format="png", dpi=110)
    finally:
        plt.close(fig)
    return path
