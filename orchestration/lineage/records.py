"""What a finished stage made, written beside its metrics: `metrics/<stage>.result.json`.

The metrics file holds numbers; the record adds what a person looks at: the output paths, the
pictures, the MLflow run and the descriptive info (e.g. where an existing teacher came from).
Every runner writes it through `stages.base.finish_stage`, so whoever shows a stage's result later (the
Dagster report of a `dvc repro`) shows exactly what the runner that made it would have shown.
Paths are stored relative to the lineage root, so a moved checkout still reads them.
"""

from __future__ import annotations

import json
from pathlib import Path

from orchestration.lineage.files import write_json_atomic

RECORD_SUFFIX = ".result.json"


def record_file(metrics_file: Path) -> Path:
    return Path(metrics_file).with_suffix(RECORD_SUFFIX)


def _relative(path: Path, root: Path) -> str:
    path = Path(path)
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def write_record(metrics_file: Path, root: Path, result) -> Path:
    """Record a StageResult's outputs, pictures, MLflow run and info (its metrics are beside)."""
    root = Path(root)
    return write_json_atomic(
        record_file(metrics_file),
        {
            "stage": result.stage,
            "outputs": [_relative(p, root) for p in result.outputs],
            "pictures": {name: _relative(p, root) for name, p in result.pictures.items()},
            "mlflow_run_id": result.mlflow_run_id,
            "info": dict(result.info),
        },
    )


def read_record(metrics_file: Path, root: Path) -> dict | None:
    """The record with absolute paths, or None when the stage has not written one."""
    path = record_file(metrics_file)
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    root = Path(root)
    record["outputs"] = [root / p for p in record["outputs"]]
    record["pictures"] = {name: root / p for name, p in record["pictures"].items()}
    return record
