"""Profiles: params.yaml is the default profile's merge; overlays state only what differs."""

import shutil

import pytest
import yaml

from orchestration.cli import main
from orchestration.params.profiles import (
    deep_merge,
    expand_students,
    profile_params,
    profile_raw,
    profiles_dir,
    write_params,
)
from orchestration.params.schema import ParamsError, load_params
from tests.helpers import REPO

OVERLAYS = ("smoke", "gpu")


def _leaves(node, prefix=()):
    """Dotted paths of every value; a mapping with no keys (backbone_kwargs: {}) is a value."""
    if not isinstance(node, dict) or not node:
        return {prefix: node}
    out = {}
    for key, value in node.items():
        out.update(_leaves(value, (*prefix, key)))
    return out


def test_committed_params_yaml_is_the_default_profile():
    committed = yaml.safe_load((REPO / "params.yaml").read_text())
    assert committed == profile_raw(REPO, "default")[0], "run: depth-distill params"
    assert load_params(REPO / "params.yaml") == profile_params(REPO, "default")


def test_the_default_profile_states_every_knob():
    """No value of params.yaml comes from a code default, so none can contradict a profile."""
    raw, _ = profile_raw(REPO, "default")
    stated = set(_leaves(raw))
    schema = set(_leaves(profile_params(REPO, "default").model_dump(mode="json")))
    assert schema - stated == set(), "knobs the default profile leaves to code defaults"


@pytest.mark.parametrize("name", OVERLAYS)
def test_overlays_are_short_and_state_only_differences(name):
    text = (profiles_dir(REPO) / f"{name}.yaml").read_text()
    assert len(text.splitlines()) < 80
    overlay = _leaves(yaml.safe_load(text))
    default = _leaves(yaml.safe_load((profiles_dir(REPO) / "default.yaml").read_text()))
    same = [k for k, v in overlay.items() if default.get(k, object()) == v]
    assert not same, f"{name}.yaml restates default values: {same}"


def test_students_state_only_what_differs_from_the_shared_block():
    default = yaml.safe_load((profiles_dir(REPO) / "default.yaml").read_text())
    shared = _leaves(default["student_defaults"])
    for name, own in default["students"].items():
        restated = [k for k, v in _leaves(own).items() if shared.get(k, object()) == v]
        assert not restated, (name, restated)


def test_merge_mappings_key_by_key_and_replace_everything_else():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    merged = deep_merge(base, {"a": {"c": [3]}, "e": {"f": None}})
    assert merged == {"a": {"b": 1, "c": [3]}, "d": 1, "e": {"f": None}}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}, "inputs are not modified"


def test_each_student_is_the_shared_block_with_its_own_keys_on_top():
    raw = {
        "student_defaults": {"epochs": 2, "optim": {"lr": 0.1, "betas": [0.9, 0.99]}},
        "students": {"a": {"optim": {"lr": 0.5}}, "b": None},
    }
    expanded = expand_students(raw, "test")
    assert "student_defaults" not in expanded
    assert expanded["students"]["a"] == {"epochs": 2, "optim": {"lr": 0.5, "betas": [0.9, 0.99]}}
    assert expanded["students"]["b"] == {"epochs": 2, "optim": {"lr": 0.1, "betas": [0.9, 0.99]}}


def test_smoke_overlay_reaches_every_student_through_the_shared_block():
    default, smoke = profile_params(REPO, "default"), profile_params(REPO, "smoke")
    assert smoke.data.labeled.n_train < default.data.labeled.n_train
    assert set(smoke.students) == set(default.students)
    for name, student in smoke.students.items():
        assert student.epochs == 1 and student.batch_size == 8, name
        assert student.model.backbone == default.students[name].model.backbone


def test_params_command_writes_checks_and_names_bad_profiles(tmp_path, capsys):
    out = tmp_path / "params.yaml"
    assert main(["params", "--profile", "smoke", "--root", str(REPO), "--output", str(out)]) == 0
    assert load_params(out) == profile_params(REPO, "smoke")
    assert out.read_text().startswith("# Written by `depth-distill params --profile smoke`")
    check = ["params", "--profile", "smoke", "--root", str(REPO), "--output", str(out), "--check"]
    assert main(check) == 0
    out.write_text(out.read_text().replace("n_train: 48", "n_train: 47"))
    assert main(check) == 1
    assert main(["params", "--profile", "nope", "--root", str(REPO), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "profile 'nope'" in err and "default, gpu, smoke" in err


def test_an_invalid_overlay_names_the_key_and_writes_nothing(tmp_path):
    shutil.copytree(profiles_dir(REPO), profiles_dir(tmp_path))
    (profiles_dir(tmp_path) / "typo.yaml").write_text("student_defaults:\n  epoch: 3\n")
    out = tmp_path / "params.yaml"
    with pytest.raises(ParamsError, match=r"typo.yaml.*\n.*students\.lite1\.epoch"):
        write_params(tmp_path, "typo", out)
    assert not out.exists()


def test_the_dagster_launchpad_picks_a_profile():
    from orchestration.dagster_app.definitions import PipelineResource

    smoke = PipelineResource(root=str(REPO), profile="smoke")
    assert smoke.params() == profile_params(REPO, "smoke")
    assert smoke.experiment_name("abcdef123456") == "dagster-abcdef12", (
        "not params.yaml: experiment"
    )
    default = PipelineResource(root=str(REPO), profile="default")
    assert default.experiment_name("abcdef123456") is None, "params.yaml's own profile"
    tuned = PipelineResource(root=str(REPO), profile="smoke", overrides={"teacher": {"epochs": 3}})
    assert tuned.params().teacher.epochs == 3
