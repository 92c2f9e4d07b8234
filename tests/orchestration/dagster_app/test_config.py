"""The launchpad's typed params overrides: checked by key and type before a run is launched,
by value before any stage runs."""

from __future__ import annotations

import dagster as dg
import pytest

from orchestration.dagster_app.config import ParamsOverrides, override_items
from orchestration.dagster_app.definitions import PipelineResource, build_definitions
from tests.helpers import REPO, smoke_params, write_smoke_params


def _run_config(overrides: dict) -> dict:
    return {"resources": {"pipeline": {"config": {"overrides": overrides}}}}


@pytest.fixture(scope="module")
def lineage_job():
    return build_definitions(smoke_params()).resolve_job_def("lineage")


def test_an_unknown_key_is_rejected_before_launch_naming_it(lineage_job):
    with pytest.raises(dg.DagsterInvalidConfigError, match=r'"epoch".*overrides:teacher'):
        dg.validate_run_config(lineage_job, _run_config({"teacher": {"epoch": 3}}))
    with pytest.raises(dg.DagsterInvalidConfigError, match=r'"lrate".*students:.*lite1.*:optim'):
        dg.validate_run_config(
            lineage_job, _run_config({"students": {"lite1": {"optim": {"lrate": 1e-3}}}})
        )


def test_an_unknown_key_given_in_code_is_rejected_too():
    with pytest.raises(ValueError, match=r"teacher\.epoch\b"):
        PipelineResource(root=str(REPO), overrides={"teacher": {"epoch": 3}})


def test_a_wrong_type_is_rejected_before_launch_naming_the_key(lineage_job):
    with pytest.raises(dg.DagsterInvalidConfigError, match=r"epochs"):
        dg.validate_run_config(lineage_job, _run_config({"teacher": {"epochs": "ten"}}))


def test_typed_overrides_reach_the_params_and_make_an_experiment():
    overrides = {"teacher": {"epochs": 3}, "students": {"lite1": {"optim": {"lr": 0.002}}}}
    typed = ParamsOverrides.model_validate(overrides)
    assert sorted(override_items(typed)) == [
        "students.lite1.optim.lr=0.002",
        "teacher.epochs=3",
    ]
    pipeline = PipelineResource(root=str(REPO), profile="smoke", overrides=overrides)
    params = pipeline.params()
    assert params.teacher.epochs == 3
    assert params.students["lite1"].optim.lr == 0.002
    assert params.students["lite0"].optim.lr == smoke_params().students["lite0"].optim.lr
    assert pipeline.experiment_name("abcdef123456") == "dagster-abcdef12"
    assert PipelineResource(root=str(REPO)).experiment_name("abcdef123456") is None


def test_a_bad_value_fails_the_run_naming_the_key_before_any_stage(tmp_path):
    write_smoke_params(tmp_path / "params.yaml")
    defs = build_definitions(smoke_params(), PipelineResource(root=str(tmp_path)))
    result = defs.resolve_job_def("lineage").execute_in_process(
        run_config=_run_config({"teacher": {"epochs": 0}}), raise_on_error=False
    )
    assert not result.success
    failures = [
        str(event.event_specific_data.error)
        for event in result.all_events
        if event.is_failure and event.event_specific_data is not None
    ]
    assert any("teacher.epochs" in failure for failure in failures), failures
    assert not result.get_asset_materialization_events()
    assert not (tmp_path / "metrics").exists() and not (tmp_path / "data").exists()
