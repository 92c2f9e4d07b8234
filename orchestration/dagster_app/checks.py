"""Asset checks, read from what a stage recorded (metrics/<stage>.json), never from a run.

Each check is a plain function of the stage's metrics and the params; `asset_checks` wraps it
as a standalone `@dg.asset_check`, so it runs after its asset in a Dagster run, can be re-run
alone from the UI on the files already there, and is the same function the report of a
`dvc repro` evaluates (orchestration.dagster_app.report). Integrity checks are errors; model-quality
checks warn (a smoke-size model is not expected to beat the row prior).
"""

# No `from __future__ import annotations`: Dagster reads the checks' context annotation as a type.
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import dagster as dg
from dagster import AssetCheckExecutionContext

from orchestration.dagster_app.lineage import AssetStage
from orchestration.dagster_app.pipeline import PipelineResource
from orchestration.params.schema import Params
from orchestration.stages.base import read_metrics

# (passed, metadata) from a stage's metrics and the params
Outcome = tuple[bool, dict]


@dataclass(frozen=True)
class StageCheck:
    name: str
    description: str
    evaluate: Callable[[dict, Params], Outcome]
    quality: bool = False

    def result(self, metrics: dict, params: Params) -> dg.AssetCheckResult:
        passed, metadata = self.evaluate(metrics, params)
        return dg.AssetCheckResult(
            check_name=self.name,
            passed=bool(passed),
            description=self.description,
            severity=dg.AssetCheckSeverity.WARN if self.quality else dg.AssetCheckSeverity.ERROR,
            metadata={k: v for k, v in metadata.items() if v is not None},
        )


def _depth_mostly_valid(metrics: dict, params: Params) -> Outcome:
    valid = metrics.get("valid_fraction")
    return valid is not None and valid >= 0.3, {"valid_fraction": valid}


def _no_nan(metrics: dict, params: Params) -> Outcome:
    nan_count = metrics.get("nan_count")
    return nan_count == 0, {"nan_count": nan_count}


def _not_inverted(domain: str, metrics: dict, params: Params) -> Outcome:
    inverted = metrics.get(f"val/{domain}/inverted_fraction")
    return inverted is not None and inverted < 0.5, {"inverted_fraction": inverted}


def _beats_row_prior(domain: str, metrics: dict, params: Params) -> Outcome:
    ours = metrics.get(f"val/{domain}/pair_accuracy")
    base = metrics.get(f"baseline/{domain}/pair_accuracy")
    passed = ours is not None and base is not None and ours > base
    return passed, {"pair_accuracy": ours, "baseline_pair_accuracy": base}


def _matches_pytorch(metrics: dict, params: Params) -> Outcome:
    diff = metrics.get("parity_max_rel_diff")
    tolerance = params.export.parity_tolerance
    return diff is not None and diff <= tolerance, {
        "parity_max_rel_diff": diff,
        "tolerance": tolerance,
    }


def _covers_every_expert(metrics: dict, params: Params) -> Outcome:
    expected = len(params.agreement.experts)
    got = metrics.get("n_experts")
    return got == expected and expected >= 2, {"n_experts": got, "expected": expected}


def _scores_every_model(metrics: dict, params: Params) -> Outcome:
    """Every model on every benchmark that ran (trivially so when none is configured)."""
    models, benchmarks = metrics.get("n_models"), metrics.get("n_benchmarks")
    if not params.zeroshot.roots:
        return True, {"status": "no benchmarks configured"}
    expected = 1 + len(params.students)
    passed = models == expected and benchmarks and metrics.get("n_results") == models * benchmarks
    return bool(passed), {
        "n_models": models,
        "expected_models": expected,
        "n_benchmarks": benchmarks,
        "n_results": metrics.get("n_results"),
    }


def _model_checks(domain: str) -> list[StageCheck]:
    """Teachers are held to their own (synthetic) validation split, students to the target."""
    return [
        StageCheck(
            "not_inverted",
            "predictions are not inverted depth (lstsq scale > 0 on most images)",
            partial(_not_inverted, domain),
            quality=True,
        ),
        StageCheck(
            "beats_row_prior",
            f"raw pair accuracy on the {domain} set beats 'lower in the image is nearer'",
            partial(_beats_row_prior, domain),
            quality=True,
        ),
    ]


def checks_for(spec: AssetStage) -> list[StageCheck]:
    """The checks of one asset of the lineage."""
    by_stage = {
        "labeled_data": [
            StageCheck(
                "depth_mostly_valid",
                "at least 30% of pixels carry valid depth",
                _depth_mostly_valid,
            )
        ],
        "teacher": _model_checks("synthetic"),
        "pseudo_labels": [
            StageCheck("no_nan", "no NaN/inf pixel in any pseudo-label", _no_nan),
        ],
        "student": _model_checks("target"),
        "export": [
            StageCheck(
                "matches_pytorch",
                "onnxruntime within export.parity_tolerance (max relative difference) of PyTorch",
                _matches_pytorch,
            )
        ],
        "agreement": [
            StageCheck(
                "covers_every_expert",
                "every configured expert voted on every pair",
                _covers_every_expert,
            )
        ],
        "zeroshot_report": [
            StageCheck(
                "scores_every_model",
                "the teacher and every student scored on every benchmark that could run",
                _scores_every_model,
            )
        ],
    }
    return by_stage.get(spec.stage, [])


def _asset_check(spec: AssetStage, check: StageCheck) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=spec.key, name=check.name, description=check.description)
    def _evaluate(
        context: AssetCheckExecutionContext, pipeline: PipelineResource
    ) -> dg.AssetCheckResult:
        metrics = read_metrics(pipeline.paths(context.run.run_id), spec.record)
        return check.result(metrics, pipeline.params())

    return _evaluate


def asset_checks(spec: AssetStage) -> list[dg.AssetChecksDefinition]:
    return [_asset_check(spec, check) for check in checks_for(spec)]
