"""Params and launchpad overrides that would point a stage's outputs outside their fixed places.

Output paths are fixed (orchestration.lineage.paths); what a user chooses in them are names: a
student's (models/students/NAME, metrics/student_NAME.json) and an experiment's
(experiments/NAME/). A name like `..` or `../../x` would make a stage clear and write another
folder (`models/` with the teacher in it, or the DVC-tracked lineage itself), so it is refused,
naming the key, before anything is touched. Paths to a user's own data, teacher or benchmark
folders may point anywhere and stay accepted.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from orchestration.cli import main
from orchestration.dagster_app.config import ParamsOverrides
from orchestration.dagster_app.pipeline import PipelineResource
from orchestration.lineage.paths import default_paths, experiment_paths
from orchestration.params.schema import ParamsError, load_params, parse_params
from tests.helpers import smoke_raw

HOSTILE_NAMES = ["..", "../../x", "../../../../etc", "/etc/cron.d", "a/b", "", "x y", ".hidden"]


@pytest.fixture(scope="module")
def raw() -> dict:
    return smoke_raw()


def with_student(raw: dict, name: str) -> dict:
    """`raw` with its student lite0 renamed `name` (and named so among the experts)."""
    out = copy.deepcopy(raw)
    out["students"][name] = out["students"].pop("lite0")
    out["agreement"]["experts"] = ["teacher", f"student:{name}"]
    return out


def write_root(root: Path, raw: dict) -> Path:
    """A repository-like root: params.yaml and outputs of an earlier run."""
    for relative in ("models/teacher/model.safetensors", "models/students/lite1/model.safetensors"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text("weights")
    (root / "metrics").mkdir(exist_ok=True)
    (root / "metrics/teacher.json").write_text("{}")
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file and folder under `root` with its content and modification time."""
    return {
        str(p.relative_to(root)): (p.read_text() if p.is_file() else "", p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_params_yaml_refuses_a_student_name_that_is_a_path(tmp_path, raw, name):
    path = write_root(tmp_path, with_student(raw, name))
    with pytest.raises(ParamsError, match=rf"students key {name!r}"):
        load_params(path)


@pytest.mark.parametrize("name", ["lite0", "lite0_small", "Student-2", "_x"])
def test_plain_student_names_are_accepted(raw, name):
    params = parse_params(with_student(raw, name))
    paths = default_paths(Path("/repo"))
    assert paths.out(paths.student(name)) == Path("/repo/models/students") / name
    assert name in params.students


@pytest.mark.parametrize("name", ["..", "."])
def test_an_experiment_named_like_a_parent_folder_is_refused(tmp_path, name):
    with pytest.raises(ValueError, match=r"experiment '\.+'"):
        experiment_paths(tmp_path, name)


@pytest.mark.parametrize("name", ["../x", "/etc", "a/../..", "...", "run 1"])
def test_other_experiment_names_stay_under_experiments(tmp_path, name):
    root = experiment_paths(tmp_path, name).root
    assert root.parent == (tmp_path / "experiments").resolve()


def test_cli_refuses_a_student_path_before_any_output_is_touched(tmp_path, raw, capsys):
    """`depth-distill stage student --student ..` would clear models/ (the teacher with it)."""
    params = write_root(tmp_path, with_student(raw, ".."))
    before = snapshot(tmp_path)
    argv = ["stage", "student", "--student", "..", "--root", str(tmp_path), "--params", str(params)]
    assert main(argv) == 2
    assert "students key '..'" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_cli_refuses_an_experiment_over_the_default_lineage(tmp_path, raw, capsys):
    params = write_root(tmp_path, raw)
    before = snapshot(tmp_path)
    argv = ["stage", "teacher", "--root", str(tmp_path), "--params", str(params)]
    assert main([*argv, "--experiment", ".."]) == 2
    assert "experiment '..'" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def _launchpad_with_student(root, raw, name: str) -> PipelineResource:
    write_root(root, raw)
    students = {name: raw["students"]["lite0"]}
    return PipelineResource(root=str(root), overrides=ParamsOverrides(students=students))


@pytest.mark.parametrize("name", ["..", "../../x", "a.b"])
def test_launchpad_refuses_a_student_key_with_dots(tmp_path, raw, name):
    """Overrides become `students.NAME.key=value`: a dot in NAME would split it elsewhere."""
    with pytest.raises(ValueError, match=rf"key {name!r} under students"):
        _launchpad_with_student(tmp_path, raw, name).params()


@pytest.mark.parametrize("name", ["a/b", "/etc/x", "x y"])
def test_launchpad_refuses_a_student_name_that_is_a_path(tmp_path, raw, name):
    with pytest.raises(ParamsError, match=rf"students key {name!r}"):
        _launchpad_with_student(tmp_path, raw, name).params()


def test_launchpad_refuses_an_experiment_over_the_default_lineage(tmp_path, raw):
    write_root(tmp_path, raw)
    pipeline = PipelineResource(root=str(tmp_path), experiment="..")
    with pytest.raises(ValueError, match=r"experiment '\.\.'"):
        pipeline.setup_for_execution(None)  # at resource setup, before any asset runs
    with pytest.raises(ValueError, match=r"experiment '\.\.'"):
        pipeline.paths("0123456789abcdef")


def test_paths_to_a_users_own_files_may_be_anywhere(tmp_path, raw):
    """Data folders, benchmark folders and expert checkpoints are the user's: outside the
    repository (an absolute path, or ../ from params.yaml's folder) is fine."""
    root = tmp_path / "repo"
    root.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere/expert.safetensors").write_text("weights")
    raw = copy.deepcopy(raw)
    raw["data"]["labeled"]["source"] = "folder"
    raw["data"]["labeled"]["folder"] = {"path": str(tmp_path / "elsewhere")}
    raw["data"]["unlabeled"]["source"] = "folder"
    raw["data"]["unlabeled"]["folder"] = {"path": "../elsewhere"}
    raw["zeroshot"]["roots"] = {"nyu": str(tmp_path / "elsewhere")}
    raw["agreement"]["experts"] = ["teacher", "../elsewhere/expert.safetensors"]
    params = load_params(write_root(root, raw))
    assert params.data.unlabeled.folder.path == "../elsewhere"
