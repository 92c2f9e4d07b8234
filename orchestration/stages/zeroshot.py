"""zeroshot_report: the teacher and every student on the zero-shot benchmarks of
`zeroshot.roots`, scored as `depth-distill zeroshot` scores them (depth_core.zeroshot).

The report (reports/zeroshot_report/) holds the table beside the published Depth Anything V2
figures (`summary.md`, which the Dagster asset shows), the results as JSON, every skipped file
with its reason, and a bar chart. Each model's figures go to MLflow under the same keys
(`zeroshot/<benchmark>/<metric>`) on the run that made the model, so comparing teacher and
student runs shows them side by side; the stage's own run holds the whole report. With no
roots configured the stage evaluates nothing and says so.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from depth_core.atomic_io import replaced_directory
from orchestration.lineage import paths as L
from orchestration.lineage.files import write_json_atomic
from orchestration.lineage.stage_id import StageId, expert_entry
from orchestration.params.schema import expert_name, resolve_path
from orchestration.stages.base import (
    StageContext,
    StageResult,
    finish_stage,
    recorded_run_id,
    stage_device,
)
from orchestration.stages.experts import model_path
from orchestration.tracking import attach_to_run, check_tracking, config_params, stage_run

STAGE = "zeroshot_report"
SUMMARY = "summary.md"
RESULTS = "results.json"
SKIPPED = "skipped_files.json"
CHART = "zeroshot.png"
# What each model logs, per benchmark, when the benchmark reports it.
LOGGED_KEYS = ("abs_rel", "delta1", "pair_accuracy", "n_images", "n_pairs", "n_skipped")
NOT_CONFIGURED = (
    "no benchmarks configured: nothing evaluated (name each benchmark's folder under "
    "zeroshot.roots in params.yaml, e.g. `nyu: /data/nyu`)"
)


def scored_models(ctx: StageContext) -> dict[str, Path]:
    """The teacher and every student of `students`, named as in the agreement report."""
    entries = ["teacher", *(expert_entry(name) for name in ctx.params.students)]
    models = {}
    for entry in entries:
        try:
            models[expert_name(entry)] = model_path(ctx, entry)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"{STAGE}: model {error}") from None
    return models


def flat_metrics(results: dict) -> dict[str, float | int]:
    """`<model>/<benchmark>/<metric>`: one flat record for dvc metrics show / diff."""
    return {
        f"{model}/{bench}/{key}": values[key]
        for model, per_bench in results.items()
        for bench, values in per_bench.items()
        for key in LOGGED_KEYS
        if values.get(key) is not None
    }


def _not_configured(ctx: StageContext, out_dir: Path) -> StageResult:
    print(f"{STAGE}: {NOT_CONFIGURED}", file=sys.stderr)
    with replaced_directory(out_dir) as folder:
        (folder / SUMMARY).write_text(NOT_CONFIGURED + "\n")
    metrics = {"n_models": 0, "n_benchmarks": 0, "n_results": 0}
    return finish_stage(ctx, STAGE, metrics, [out_dir], info={"status": NOT_CONFIGURED})


def _summary_text(results: dict, names: list[str], skipped: dict[str, str]) -> str:
    from depth_core.zeroshot.report import format_table, skip_counts

    lines = [format_table(results, names), ""]
    for name, reason in skipped.items():
        lines.append(f"- skipped {name}: {reason}")
    for model, per_bench in results.items():
        for bench, values in per_bench.items():
            if values["n_skipped"]:
                lines.append(f"- {model} {bench}: skipped {skip_counts(values)}, see {SKIPPED}")
    return "\n".join(lines).rstrip() + "\n"


def _write_report(
    folder: Path, results: dict, models: dict[str, Path], names: list[str], skipped: dict
) -> None:
    from depth_core.zeroshot.report import plot_benchmarks, summary

    (folder / SUMMARY).write_text(_summary_text(results, names, skipped))
    report = {
        "models": {name: str(path) for name, path in models.items()},
        "results": summary(results),
        "skipped_benchmarks": skipped,
    }
    write_json_atomic(folder / RESULTS, report)
    write_json_atomic(
        folder / SKIPPED,
        {
            m: {b: v["skipped"] for b, v in per.items() if v["skipped"]}
            for m, per in results.items()
        },
    )
    plot_benchmarks(results, names, folder / CHART)


def _log_each_model(ctx: StageContext, metrics: dict, names: list[str]) -> None:
    """`zeroshot/<benchmark>/<metric>` on the run that made each model."""
    for model in ("teacher", *(StageId.of_student(name).record for name in ctx.params.students)):
        run_id = recorded_run_id(ctx, model)  # metrics/<model>.json is named like the model
        own = {
            f"zeroshot/{key.split('/', 1)[1]}": value
            for key, value in metrics.items()
            if key.startswith(f"{model}/")
        }
        attach_to_run(ctx.paths.default_root, run_id, {}, own, {"benchmarks": ", ".join(names)})


def stage_zeroshot_report(ctx: StageContext) -> StageResult:
    from depth_core.inference import load_for_inference
    from depth_core.zeroshot.report import summary
    from depth_core.zeroshot.suite import check_roots, run_suite

    cfg = ctx.params.zeroshot
    out_dir = ctx.paths.out(L.ZEROSHOT_REPORT)
    if not cfg.roots:
        return _not_configured(ctx, out_dir)
    root = ctx.paths.default_root
    models = scored_models(ctx)
    check_tracking(root)
    start = time.perf_counter()
    roots = {name: resolve_path(path, root) for name, path in cfg.roots.items()}
    splits = {name: resolve_path(path, root) for name, path in cfg.splits.items()}
    benchmarks, skipped = check_roots(list(cfg.roots), roots, splits)
    for name, reason in skipped.items():
        print(
            f"{STAGE}: skipping {name} (zeroshot.roots.{name}): {reason}",
            file=sys.stderr,
        )
    if not benchmarks:
        reasons = "; ".join(f"{name}: {reason}" for name, reason in skipped.items())
        raise FileNotFoundError(
            f"zeroshot.roots: none of the configured benchmarks can run ({reasons})"
        )
    device = stage_device(ctx.params)

    def loader(path: Path):
        def load():
            model = load_for_inference(path, device)
            return lambda images: model.predict(images, cfg.batch_size, cfg.flip_tta)

        return load

    loaders = {name: loader(path) for name, path in models.items()}
    results = run_suite(loaders, benchmarks, cfg.batch_size, cfg.max_images)
    names = [b.name for b in benchmarks]
    with replaced_directory(out_dir) as folder:  # a failed run keeps the previous report
        _write_report(folder, results, models, names, skipped)
    metrics = {
        "n_models": len(models),
        "n_benchmarks": len(benchmarks),
        "n_skipped_benchmarks": len(skipped),
        "n_results": sum(len(per) for per in results.values()),
        **flat_metrics(summary(results)),
        "stage_seconds": time.perf_counter() - start,
    }
    _log_each_model(ctx, metrics, names)
    with stage_run(
        root,
        STAGE,
        "report",
        ctx.pipeline_key,
        ctx.runner,
        {"device": ctx.params.device, **config_params(cfg, "zeroshot")},
        ctx.tags,
        "zero-shot benchmarks",
    ) as run:
        run.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        run.log_artifact(out_dir, STAGE)
        metrics["mlflow_run_id"] = run.run_id
    info = {f"skipped/{name}": reason for name, reason in skipped.items()}
    info.update({f"{name}_path": str(path) for name, path in models.items()})
    return finish_stage(
        ctx, STAGE, metrics, [out_dir], {"zeroshot": out_dir / CHART}, run.run_id, info
    )
