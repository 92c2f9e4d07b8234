"""zeroshot_report at smoke size: every model of the lineage on benchmarks in their own layouts,
scored as `depth-distill zeroshot` scores them, recorded for DVC, Dagster and MLflow."""

from __future__ import annotations

import json

import pytest
import torch

from depth_core.models import build_model, save_checkpoint
from orchestration.commands import zeroshot as zeroshot_command
from orchestration.lineage.paths import default_paths
from orchestration.params.schema import parse_params
from orchestration.stages.base import StageContext
from orchestration.stages.registry import run_stage
from orchestration.stages.zeroshot import NOT_CONFIGURED
from orchestration.tracking import stage_run
from tests.helpers import REPO, run_command, smoke_raw
from tests.zeroshot_fixtures import write_da2k, write_scannet


def _context(root, benchmarks: dict | None) -> StageContext:
    raw = smoke_raw()
    raw["zeroshot"] = benchmarks
    params = parse_params(raw, root=root)
    return StageContext(params=params, paths=default_paths(root), pipeline_key="k")


@pytest.fixture
def lineage_models(tmp_path, monkeypatch):
    """A root holding a smoke teacher and smoke students, the teacher's and one student's
    training runs recorded as their stages record them, and two benchmarks beside it."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    ctx = _context(tmp_path, None)
    params = ctx.params
    torch.manual_seed(0)
    models = {"teacher": params.teacher.model}
    models.update({f"students/{n}": cfg.model for n, cfg in params.students.items()})
    for where, cfg in models.items():
        save_checkpoint(
            tmp_path / f"models/{where}/model.safetensors",
            build_model(cfg, load_pretrained=False).eval(),
        )
    (tmp_path / "metrics").mkdir()
    runs = {}
    for record in ("teacher", f"student_{next(iter(params.students))}"):
        with stage_run(tmp_path, record, record.split("_")[0], "k", "cli") as run:
            run.log_metrics({"val/target/abs_rel": 0.5})
        (tmp_path / f"metrics/{record}.json").write_text(json.dumps({"mlflow_run_id": run.run_id}))
        runs[record] = run.run_id
    roots = {
        "scannet": str(write_scannet(tmp_path / "bench" / "scannet")),
        "da2k": str(write_da2k(tmp_path / "bench" / "da2k")),
    }
    return tmp_path, roots, runs


def test_every_model_is_scored_on_every_benchmark_and_a_missing_root_is_skipped(
    lineage_models, capsys
):
    root, roots, _ = lineage_models
    ctx = _context(root, {"roots": {**roots, "nyu": "no/such/folder"}})
    result = run_stage("zeroshot_report", ctx)
    models = ["teacher", *(f"student_{n}" for n in ctx.params.students)]
    recorded = json.loads((root / "metrics/zeroshot_report.json").read_text())
    assert recorded["n_models"] == len(models) and recorded["n_benchmarks"] == 2
    assert recorded["n_skipped_benchmarks"] == 1
    assert recorded["n_results"] == 2 * len(models)
    for model in models:
        assert (
            0 <= recorded[f"{model}/scannet/abs_rel"] and recorded[f"{model}/scannet/n_images"] == 3
        )
        assert recorded[f"{model}/scannet/n_skipped"] == 2  # the corrupt and the missing frame
        assert 0 <= recorded[f"{model}/da2k/pair_accuracy"] <= 1
    report = root / "reports/zeroshot_report"
    summary = (report / "summary.md").read_text()
    assert summary.startswith("| model | scannet AbsRel | scannet δ1 | scannet n | da2k acc |")
    assert all(f"| {model} |" in summary for model in models)
    assert "skipped nyu:" in summary and "no/such/folder" in summary
    assert "- teacher scannet: skipped 2 (corrupt 1, missing 1), see skipped_files.json" in summary
    skipped = json.loads((report / "skipped_files.json").read_text())
    assert sorted(e["code"] for e in skipped["teacher"]["scannet"]) == ["corrupt", "missing"]
    assert (report / "zeroshot.png").stat().st_size > 0
    assert result.pictures == {"zeroshot": report / "zeroshot.png"}
    assert "skipping nyu (zeroshot.roots.nyu)" in capsys.readouterr().err
    assert result.info["teacher_path"].endswith("models/teacher/model.safetensors")


def test_the_stage_scores_a_model_as_the_benchmark_command_does(lineage_models, tmp_path):
    root, roots, _ = lineage_models
    run_stage("zeroshot_report", _context(root, {"roots": roots}))
    stage = json.loads((root / "reports/zeroshot_report/results.json").read_text())
    teacher = root / "models/teacher/model.safetensors"
    argv = ["zeroshot", "--checkpoint", str(teacher), "--suite", "scannet", "da2k", "--json"]
    argv += [str(tmp_path / "cli.json"), "--device", "cpu", "--quiet"]
    argv += [f"--root=scannet={roots['scannet']}", f"--root=da2k={roots['da2k']}"]
    assert run_command(zeroshot_command, argv) == 0
    cli = json.loads((tmp_path / "cli.json").read_text())[str(teacher)]
    for bench, values in cli.items():
        for key, value in values.items():
            assert stage["results"]["teacher"][bench][key] == pytest.approx(value, abs=1e-6)


def test_each_model_logs_the_same_keys_on_its_own_run(lineage_models):
    from mlflow.tracking import MlflowClient

    root, roots, runs = lineage_models
    result = run_stage("zeroshot_report", _context(root, {"roots": roots}))
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    recorded = json.loads((root / "metrics/zeroshot_report.json").read_text())
    keys = None
    for record, run_id in runs.items():
        logged = client.get_run(run_id).data
        own = {k: v for k, v in logged.metrics.items() if k.startswith("zeroshot/")}
        assert keys is None or set(own) == keys
        keys = set(own)
        for key, value in own.items():
            assert value == pytest.approx(recorded[f"{record}/{key.split('/', 1)[1]}"])
        assert logged.tags["benchmarks"] == "scannet, da2k"
    assert {
        "zeroshot/scannet/abs_rel",
        "zeroshot/scannet/delta1",
        "zeroshot/da2k/pair_accuracy",
    } <= keys
    report_run = client.get_run(result.mlflow_run_id)
    assert report_run.data.tags["stage"] == "zeroshot_report"
    assert report_run.data.params["zeroshot.batch_size"] == "4"
    artifacts = {a.path for a in client.list_artifacts(result.mlflow_run_id, "zeroshot_report")}
    assert "zeroshot_report/summary.md" in artifacts and "zeroshot_report/zeroshot.png" in artifacts


def test_without_roots_the_stage_does_nothing_and_says_so(tmp_path, monkeypatch, capsys):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    stale = tmp_path / "reports/zeroshot_report/zeroshot.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"an earlier report")
    result = run_stage("zeroshot_report", _context(tmp_path, None))  # no model exists either
    assert result.info == {"status": NOT_CONFIGURED} and result.mlflow_run_id is None
    assert result.metrics["n_results"] == 0
    assert NOT_CONFIGURED in capsys.readouterr().err
    report = tmp_path / "reports/zeroshot_report"
    assert [p.name for p in report.iterdir()] == ["summary.md"]
    assert (report / "summary.md").read_text().strip() == NOT_CONFIGURED
    assert not [p for p in report.parent.iterdir() if p.name.startswith(".")]
    if (tmp_path / "mlflow.db").exists():
        client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
        assert not [r for r in runs if r.data.tags.get("stage") == "zeroshot_report"]


def test_no_runnable_benchmark_is_an_error_naming_the_key(lineage_models):
    root, _, _ = lineage_models
    ctx = _context(root, {"roots": {"nyu": "missing", "kitti": "also_missing"}})
    with pytest.raises(FileNotFoundError, match=r"zeroshot\.roots: none .*\(nyu: root"):
        run_stage("zeroshot_report", ctx)


def test_a_missing_model_is_named_and_the_previous_report_stays(lineage_models):
    root, roots, _ = lineage_models
    ctx = _context(root, {"roots": roots})
    run_stage("zeroshot_report", ctx)
    before = (root / "reports/zeroshot_report/summary.md").read_text()
    student = next(iter(ctx.params.students))
    (root / f"models/students/{student}/model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=f"model 'student_{student}': checkpoint"):
        run_stage("zeroshot_report", ctx)
    assert (root / "reports/zeroshot_report/summary.md").read_text() == before


def test_the_asset_depends_on_every_model_and_is_checked():
    from orchestration.dagster_app.checks import checks_for
    from orchestration.dagster_app.lineage import lineage
    from tests.helpers import smoke_params

    params = smoke_params()
    spec = next(s for s in lineage(params) if s.key == "zeroshot_report")
    assert set(spec.deps) == {
        "teacher_checkpoint",
        *(f"student_checkpoint_{n}" for n in params.students),
    }
    (check,) = checks_for(spec)
    assert check.evaluate({"n_models": 0}, params)[0]  # nothing configured: nothing to miss
    configured = parse_params({**smoke_raw(), "zeroshot": {"roots": {"nyu": "x"}}}, root=REPO)
    models = 1 + len(params.students)
    full = {"n_models": models, "n_benchmarks": 2, "n_results": 2 * models}
    assert check.evaluate(full, configured)[0]
    assert not check.evaluate({**full, "n_results": 2 * models - 1}, configured)[0]
    assert not check.evaluate({**full, "n_models": models - 1}, configured)[0]


def test_the_dagster_asset_shows_the_table_and_passes_its_check(lineage_models):
    import dagster as dg
    import yaml

    from orchestration.dagster_app.definitions import (
        PipelineResource,
        build_definitions,
        lineage_resources,
    )
    from orchestration.params.schema import load_params

    root, roots, _ = lineage_models
    raw = {**smoke_raw(), "zeroshot": {"roots": roots}}
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    defs = build_definitions(load_params(root / "params.yaml"))
    result = dg.materialize(
        [*defs.assets, *defs.asset_checks],
        selection=dg.AssetSelection.assets("zeroshot_report"),
        resources=lineage_resources(PipelineResource(root=str(root), commit_to_dvc=False)),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "scores_every_model" and check.passed
    metadata = result.asset_materializations_for_node("zeroshot_report")[0].metadata
    assert (
        "| teacher |" in metadata["summary"].value
        and "Depth Anything V2" in metadata["summary"].value
    )
    assert "data:image/png;base64" in metadata["pictures"].value
    assert metadata["n_models"].value == 1 + len(raw["students"])
    assert metadata["teacher_path"].value.endswith("models/teacher/model.safetensors")
    spec = defs.get_assets_def("zeroshot_report")
    assert spec.group_names_by_key[dg.AssetKey("zeroshot_report")] == "reports"
