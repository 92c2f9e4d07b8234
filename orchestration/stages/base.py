"""The stage contract: what every lineage stage takes (`StageContext`) and gives (`StageResult`).

A stage is a function of a context: params + input paths in, files + metrics out. `dvc repro`
reaches it through `depth-distill stage NAME`, the Dagster assets through the same
`orchestration.stages.registry.run_stage`. Each stage writes to the fixed paths of
`orchestration.lineage.paths`, keeps a persisted output only while its fingerprint holds
(`prepare_output`) and ends in `finish_stage`, which records its metrics and what it made.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from orchestration.lineage import paths as L
from orchestration.lineage.files import write_json_atomic
from orchestration.lineage.fingerprints import (
    FINGERPRINT_FILE,
    code_digest,
    fingerprint_of,
    upstream_entry,
)
from orchestration.lineage.paths import LineagePaths
from orchestration.lineage.records import write_record
from orchestration.lineage.stage_id import StageId
from orchestration.params.schema import Params
from orchestration.tracking import git_commit, teacher_tags


@dataclass
class StageContext:
    """Everything a stage needs besides its params: where to write and how to tag its runs."""

    params: Params
    paths: LineagePaths
    runner: str = "cli"
    pipeline_key: str | None = None
    experiment: str | None = None

    def __post_init__(self):
        if self.pipeline_key is None:
            self.pipeline_key = default_pipeline_key(self.paths.root, self.params)

    @property
    def tags(self) -> dict[str, str]:
        """Tags of every MLflow run of this context: the experiment, and where the teacher
        that shaped the run came from."""
        teacher = self.params.teacher
        tags = teacher_tags(teacher.source, teacher.path)
        if self.experiment:
            tags["experiment"] = self.experiment
        return tags


@dataclass
class StageResult:
    stage: str
    metrics: dict[str, float | int | str | None]
    outputs: list[Path] = field(default_factory=list)
    pictures: dict[str, Path] = field(default_factory=dict)
    mlflow_run_id: str | None = None
    info: dict[str, str] = field(default_factory=dict)  # what was made, for people (not metrics)


def default_pipeline_key(root: Path, params: Params) -> str:
    """Stages of one DVC pipeline execution share this key: git commit + params digest."""
    digest = hashlib.sha1(params.model_dump_json().encode()).hexdigest()[:12]
    return f"{(git_commit(root) or 'nogit')[:12]}-{digest}"


def prepare_output(
    path: Path, fingerprint: dict, upstream: list[Path] = (), code: str | None = None
) -> None:
    """Keep a persisted output only if it was made from the same params, code and inputs.

    Outputs survive an interruption so a re-run resumes (complete shards, the last training
    checkpoint); when the params, the code of dvc.yaml stage `code` or an upstream output's
    fingerprint or content changed, the stale directory goes and the work is redone.
    """
    full = {
        "params": fingerprint,
        "code": code_digest(code) if code else None,
        "upstream": {str(Path(u).name): upstream_entry(u) for u in upstream},
    }
    path = Path(path)
    if path.exists() and fingerprint_of(path) != json.loads(json.dumps(full, sort_keys=True)):
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path / FINGERPRINT_FILE, full)


def finish_stage(
    ctx: StageContext,
    stage: str,
    metrics: dict,
    outputs: list[Path],
    pictures: dict[str, Path] | None = None,
    run_id: str | None = None,
    info: dict[str, str] | None = None,
) -> StageResult:
    """Write the metrics and the record of what was made (orchestration.lineage.records)."""
    metrics = {**metrics, "stage_seconds": round(float(metrics.get("stage_seconds", 0.0)), 2)}
    write_json_atomic(ctx.paths.metrics_file(stage), metrics)
    result = StageResult(stage, metrics, outputs, pictures or {}, run_id, info or {})
    write_record(ctx.paths.metrics_file(stage), ctx.paths.root, result)
    return result


def stage_device(params: Params):
    """The device of the pipeline's `device` key."""
    return checked_device(params.device, "device")


def checked_device(preference: str, key: str):
    """The device a stage runs on, or a ValueError naming the params key that asked for it."""
    from depth_core.device import pick_device

    try:
        return pick_device(preference)
    except (RuntimeError, ValueError) as error:
        raise ValueError(f"{key}: {error}") from None


def section_device(own: str, key: str, params: Params):
    """A section's own device (`KEY.device`), or the pipeline's `device` when it says auto."""
    if own != "auto":
        return checked_device(own, f"{key}.device")
    return stage_device(params)


def student_config(ctx: StageContext, name: str):
    """The params of student `name`, or a KeyError naming the params key."""
    if name not in ctx.params.students:
        raise KeyError(
            f"{StageId.of_student(name).params_key}: no such student in params "
            f"(known: {sorted(ctx.params.students)})"
        )
    return ctx.params.students[name]


def distributed_rank() -> int:
    """This process's rank under torchrun (RANK is set by the launcher), else 0."""
    return int(os.environ.get("RANK", "0"))


def write_preview(dataset_dir: Path, out_png: Path, n: int = 16) -> Path:
    """A contact sheet of a dataset's first samples: what a data stage shows people."""
    from depth_core.data.preview import contact_sheet

    contact_sheet(dataset_dir, out_png, n=n)
    return out_png


def recorded_run_id(ctx: StageContext, record: str) -> str | None:
    """The MLflow run a stage recorded in metrics/<record>.json; an experiment reads the default
    lineage's record for an output it did not make itself."""
    path = ctx.paths.inp(f"{L.METRICS}/{record}.json")
    return json.loads(path.read_text()).get("mlflow_run_id") if path.exists() else None


def read_metrics(paths: LineagePaths, record: str) -> dict:
    """What a stage wrote to metrics/<record>.json, or {} before it ran."""
    path = paths.metrics_file(record)
    return json.loads(path.read_text()) if path.exists() else {}
