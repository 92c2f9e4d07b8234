import json

import pytest

from orchestration.lineage.fingerprints import FINGERPRINT_FILE
from orchestration.lineage.paths import LineagePaths, default_paths, experiment_paths
from orchestration.stages.base import prepare_output
from orchestration.stages.registry import run_stage


def test_prepare_output_keeps_matching_and_clears_stale(tmp_path):
    out = tmp_path / "data" / "set"
    prepare_output(out, {"n": 1})
    (out / "shard-0.npz").write_bytes(b"done")
    prepare_output(out, {"n": 1})
    assert (out / "shard-0.npz").exists(), "a matching output must survive (resume)"
    prepare_output(out, {"n": 2})
    assert not (out / "shard-0.npz").exists(), "a stale output must be cleared"
    assert json.loads((out / FINGERPRINT_FILE).read_text())["params"] == {"n": 2}


def test_prepare_output_follows_upstream_changes(tmp_path):
    upstream, out = tmp_path / "up", tmp_path / "down"
    prepare_output(upstream, {"seed": 0})
    prepare_output(out, {"lr": 1}, [upstream])
    (out / "model.safetensors").write_bytes(b"w")
    prepare_output(upstream, {"seed": 1})
    prepare_output(out, {"lr": 1}, [upstream])
    assert not (out / "model.safetensors").exists()


def test_experiment_layout_reads_default_outputs_and_writes_its_own(tmp_path):
    (tmp_path / "data/labeled/train").mkdir(parents=True)
    paths = experiment_paths(tmp_path, "lr sweep/1")
    assert paths.is_experiment
    assert paths.root == (tmp_path / "experiments" / "lr_sweep_1").resolve()
    assert paths.inp("data/labeled/train") == tmp_path.resolve() / "data/labeled/train"
    assert paths.out("models/teacher").is_relative_to(paths.root)
    (paths.root / "data/labeled/train").mkdir(parents=True)
    assert paths.inp("data/labeled/train") == paths.root / "data/labeled/train"
    assert not default_paths(tmp_path).is_experiment
    assert LineagePaths(tmp_path).inp("x") == tmp_path / "x"


def test_unknown_stage_and_student_are_named(tmp_path):
    from orchestration.stages.base import StageContext
    from tests.helpers import smoke_params

    ctx = StageContext(
        params=smoke_params(),
        paths=default_paths(tmp_path),
        pipeline_key="k",
    )
    with pytest.raises(KeyError, match="nope"):
        run_stage("nope", ctx)
    with pytest.raises(ValueError, match="--student"):
        run_stage("student", ctx)
    with pytest.raises(KeyError, match="students.ghost"):
        run_stage("student", ctx, student="ghost")
