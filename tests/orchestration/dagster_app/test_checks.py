"""Asset checks judge what a stage recorded, and run alone, without materialising anything."""

from __future__ import annotations

import json

import dagster as dg

from orchestration.dagster_app.checks import checks_for
from orchestration.dagster_app.definitions import PipelineResource, build_definitions
from orchestration.dagster_app.lineage import AssetStage, lineage
from orchestration.lineage.stage_id import PER_STUDENT, StageId
from tests.helpers import smoke_params, write_smoke_params


def _check(stage: str, name: str):
    spec = AssetStage(StageId(stage, "s" if stage in PER_STUDENT else None))
    return next(c for c in checks_for(spec) if c.name == name)


def test_each_check_passes_and_fails_on_the_metrics_it_reads():
    params = smoke_params()
    beats = _check("student", "beats_row_prior")
    good = {"val/target/pair_accuracy": 0.8, "baseline/target/pair_accuracy": 0.7}
    assert beats.result(good, params).passed
    assert not beats.result({**good, "val/target/pair_accuracy": 0.6}, params).passed
    assert beats.result(good, params).severity == dg.AssetCheckSeverity.WARN
    teacher_beats = _check("teacher", "beats_row_prior")
    assert not teacher_beats.result(good, params).passed, "the teacher is judged on synthetic"
    parity = _check("export", "matches_pytorch")
    tolerance = params.export.parity_tolerance
    assert parity.result({"parity_max_rel_diff": tolerance / 2}, params).passed
    assert not parity.result({"parity_max_rel_diff": tolerance * 2}, params).passed
    assert parity.result({}, params).severity == dg.AssetCheckSeverity.ERROR
    experts = _check("agreement", "covers_every_expert")
    assert experts.result({"n_experts": len(params.agreement.experts)}, params).passed
    assert not experts.result({"n_experts": 1}, params).passed
    assert not _check("pseudo_labels", "no_nan").result({}, params).passed, "nothing recorded"


def test_every_asset_of_the_lineage_has_its_checks_defined():
    defs = build_definitions(smoke_params())
    defined = {
        (k.asset_key.to_user_string(), k.name) for k in defs.resolve_asset_graph().asset_check_keys
    }
    expected = {(spec.key, c.name) for spec in lineage(smoke_params()) for c in checks_for(spec)}
    assert defined == expected
    assert ("teacher_checkpoint", "not_inverted") in defined
    assert ("expert_agreement_report", "covers_every_expert") in defined


def test_the_checks_job_reruns_checks_on_recorded_metrics_without_materialising(tmp_path):
    write_smoke_params(tmp_path / "params.yaml")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/teacher.json").write_text(
        json.dumps(
            {
                "val/synthetic/inverted_fraction": 0.75,
                "val/synthetic/pair_accuracy": 0.9,
                "baseline/synthetic/pair_accuracy": 0.6,
            }
        )
    )
    defs = build_definitions(smoke_params(), PipelineResource(root=str(tmp_path)))
    result = defs.resolve_job_def("checks").execute_in_process(raise_on_error=False)
    evaluations = {
        (e.asset_key.to_user_string(), e.check_name): e
        for e in result.get_asset_check_evaluations()
    }
    assert not evaluations["teacher_checkpoint", "not_inverted"].passed
    assert (
        evaluations["teacher_checkpoint", "not_inverted"].metadata["inverted_fraction"].value
        == 0.75
    )
    assert evaluations["teacher_checkpoint", "beats_row_prior"].passed
    assert not evaluations["pseudo_labels", "no_nan"].passed, "no recorded metrics: not vouched"
    assert not result.get_asset_materialization_events()
