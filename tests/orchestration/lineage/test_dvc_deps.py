"""dvc.yaml is the one declaration of the lineage: each stage's code deps are exactly the code
the stage imports, and the paths and params the code uses are the ones it declares."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestration.lineage import dvc_file, paths
from orchestration.lineage.stage_id import StageId
from orchestration.params.schema import params_section
from orchestration.stages.registry import STAGE_NAMES
from tests.helpers import smoke_params
from tests.orchestration.lineage.stage_imports import PACKAGES, folded, stage_code, stage_functions

DVC_STAGES = list(dvc_file.read_stages())


def dep_problems(stage: str, declared: list[str]) -> list[str]:
    """What is wrong with `declared` as the code deps of `stage`, one line per module."""
    code = {d for d in declared if Path(d).parts[0] in PACKAGES}
    expected = folded(stage_code(stage))
    problems = [f"dvc.yaml stage {stage}: missing dep {m} (imported)" for m in expected - code]
    problems += [
        f"dvc.yaml stage {stage}: superfluous dep {m} (not imported)" for m in code - expected
    ]
    return sorted(problems)


@pytest.mark.parametrize("stage", DVC_STAGES)
def test_code_deps_are_exactly_what_the_stage_imports(stage):
    assert dep_problems(stage, dvc_file.stage_deps(stage)) == []


def test_a_missing_or_superfluous_dep_is_named():
    declared = dvc_file.stage_deps("pseudo_labels")
    assert "depth_core/pseudo_label.py" in declared
    without = [d for d in declared if d != "depth_core/pseudo_label.py"]
    assert dep_problems("pseudo_labels", without) == [
        "dvc.yaml stage pseudo_labels: missing dep depth_core/pseudo_label.py (imported)"
    ]
    assert dep_problems("pseudo_labels", [*declared, "depth_core/voting"]) == [
        "dvc.yaml stage pseudo_labels: superfluous dep depth_core/voting (not imported)"
    ]


def test_the_closure_follows_what_each_stage_runs():
    data = stage_code("labeled_data")
    assert "depth_core/synth/render.py" in data and "orchestration/stages/base.py" in data
    assert "depth_core/data/augment.py" not in data  # training only
    assert "depth_core/training/trainer.py" not in data
    teacher = stage_code("teacher")
    for module in (
        "depth_core/data/augment.py",
        "depth_core/data/dataset.py",
        "depth_core/plots.py",
    ):
        assert module in teacher
    assert "depth_core/voting/agreement.py" not in teacher
    assert "orchestration/stages/export.py" in stage_code("export")
    assert "depth_core/models/checkpoint.py" in stage_code("pseudo_labels")


def test_every_dvc_stage_is_a_stage_of_the_cli():
    assert set(DVC_STAGES) == set(STAGE_NAMES) == set(stage_functions())


def test_stage_params_name_params_yaml_keys():
    params = smoke_params()
    name = next(iter(params.students))
    for stage in DVC_STAGES:
        for key in dvc_file.stage_params(stage, key=name):
            params_section(params, key)  # raises for a key params.yaml does not have


def test_lineage_paths_are_every_declared_output():
    student = next(iter(smoke_params().students))
    outputs = {
        paths.LABELED_TRAIN,
        paths.LABELED_VAL,
        paths.UNLABELED,
        paths.TARGET_EVAL,
        paths.PSEUDO_LABELS,
        paths.TEACHER,
        paths.AGREEMENT,
        paths.ZEROSHOT_REPORT,
        paths.LineagePaths(Path(".")).student(student),
        f"{paths.ONNX}/{student}.onnx",
    }
    declared = {out for stage in DVC_STAGES for out in dvc_file.stage_outs(stage, key=student)}
    assert outputs == declared


def _reports(stage: str, student: str) -> list[str]:
    """The metrics and plots files dvc.yaml declares for `stage` (for `student` when per student)."""
    entry = dvc_file.read_stages()[stage]
    entry = entry.get("do", entry)
    items = [*(entry.get("metrics") or []), *(entry.get("plots") or [])]
    names = [item if isinstance(item, str) else next(iter(item)) for item in items]
    return [name.replace(dvc_file.KEY, student) for name in names]


def test_metrics_and_plots_follow_the_paths():
    student = next(iter(smoke_params().students))
    plain = paths.LineagePaths(Path("."))
    for stage in DVC_STAGES:
        per_student = "foreach" in dvc_file.read_stages()[stage]
        label = StageId(stage, student if per_student else None).record
        for path in _reports(stage, student):
            assert path == plain.metrics_file(label).as_posix() or Path(path).parent == Path(
                plain.report_dir(label)
            ), (
                f"dvc.yaml stage {stage}: {path} is neither metrics/{label}.json nor in reports/{label}/"
            )
