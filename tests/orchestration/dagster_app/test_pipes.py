"""Dagster sends the heavy stages through Pipes: the pseudo-label asset launches `depth-distill
stage pseudo_labels` under a 2-rank torchrun, and rank 0 reports one materialisation with the
metadata an in-process asset carries; DVC records it, so `dvc status` stays clean."""

from __future__ import annotations

import json
import shutil

import dagster as dg
import pytest

from orchestration.commands.stage import LAUNCHER_ENV
from orchestration.dagster_app.definitions import (
    PipelineResource,
    build_definitions,
    lineage_resources,
)
from orchestration.dagster_app.lineage import lineage
from orchestration.dagster_app.metadata import stage_metadata
from orchestration.dagster_app.pipes import pipes_metadata
from orchestration.dagster_app.report import recorded_result
from orchestration.lineage.dvc_lock import LOCK_TAG, lock_state
from orchestration.lineage.paths import default_paths
from orchestration.params.schema import load_params
from tests.orchestration.conftest import BIN, run

pytestmark = pytest.mark.slow


def _as_stored(value):
    """A metadata value as Dagster stores it (plain strings and bools become typed values)."""
    if isinstance(value, dg.MetadataValue):
        return value
    return dg.MetadataValue.bool(value) if isinstance(value, bool) else dg.MetadataValue.text(value)


def test_metadata_survives_the_pipes_encoding():
    values = {
        "n": dg.MetadataValue.int(3),
        "x": dg.MetadataValue.float(0.5),
        "metrics": dg.MetadataValue.json({"a": 1}),
        "path/out": dg.MetadataValue.path("/p"),
        "mlflow_run": dg.MetadataValue.url("http://h/r"),
        "pictures": dg.MetadataValue.md("**x**"),
        "note": "text",
        "dynamic_shapes": True,
    }
    encoded = pipes_metadata(values)
    assert encoded["n"] == {"raw_value": 3, "type": "int"}
    assert encoded["note"] == {"raw_value": "text", "type": "text"}
    assert encoded["dynamic_shapes"] == {"raw_value": True, "type": "bool"}
    assert {v["type"] for v in encoded.values()} == {
        "int", "float", "json", "path", "url", "md", "text", "bool"
    }  # fmt: skip


def test_pseudo_labels_through_pipes_under_two_ranks(project_copy, monkeypatch):
    root = project_copy
    run([str(BIN / "dvc"), "repro", "pseudo_labels"], root, timeout=900)
    shutil.rmtree(root / "data" / "pseudo_labels")  # labelled again, by two ranks
    params = load_params(root / "params.yaml")
    spec = next(s for s in lineage(params) if s.stage == "pseudo_labels")
    defs = build_definitions(params)
    monkeypatch.setenv(LAUNCHER_ENV, "torchrun --standalone --nproc_per_node 2")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("DEPTH_DISTILL_ROOT", str(root))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = dg.materialize(
        [defs.get_assets_def(spec.key)],
        resources=lineage_resources(PipelineResource(root=str(root))),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    events = result.asset_materializations_for_node(spec.key)
    assert len(events) == 1, "rank 0 alone reports"
    got = events[0]
    metrics = json.loads((root / "metrics/pseudo_labels.json").read_text())
    assert metrics["world_size"] == 2 and metrics["n_shards_written"] >= 2
    state = lock_state(root, spec.dvc_stage)
    assert state is not None and got.tags[LOCK_TAG] == state.digest
    in_process = stage_metadata(recorded_result(default_paths(root), spec), state.hashes)
    assert set(got.metadata) == set(in_process), "the same entries as an in-process asset"
    for key, value in in_process.items():
        assert got.metadata[key] == _as_stored(value), key
    # DVC holds what the asset made: the stage and everything it came from are up to date
    status = run([str(BIN / "dvc"), "status", "--json", "--with-deps", "pseudo_labels"], root)
    assert json.loads(status.stdout or "{}") == {}, status.stdout
