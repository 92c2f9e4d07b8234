"""Turn a StageResult into the metadata people look at in the Dagster UI.

One builder for both kinds of materialisation: an asset's run and the report of a `dvc repro`
(orchestration.dagster_app.report) call `stage_metadata` on the same StageResult, so they carry
the same keys.
"""

from __future__ import annotations

import base64
import math
from pathlib import Path

import dagster as dg

from orchestration.stages.base import StageResult

# Metric keys worth a first-class entry; everything else is in the JSON table entry.
_HEADLINE_PREFIXES = ("val/", "train/", "baseline/", "accuracy", "agreement", "n_", "images_per")


def picture_markdown(pictures: dict[str, Path]) -> str:
    """Inline PNGs as data URIs so the pictures show up in the asset's metadata panel."""
    parts = []
    for name, path in pictures.items():
        if not Path(path).exists():
            continue
        data = base64.b64encode(Path(path).read_bytes()).decode()
        parts.append(f"**{name}**\n\n![{name}](data:image/png;base64,{data})")
    return "\n\n".join(parts)


def mlflow_url(run_id: str, experiment_id: str | None = None) -> str:
    """The run's page in the MLflow UI configured for tracking (DEPTH_DISTILL_MLFLOW_UI)."""
    from orchestration.tracking import run_page_url

    return run_page_url(run_id, experiment_id)


def stage_metadata(result: StageResult, dvc_hashes: dict[str, str] | None = None) -> dict:
    metadata: dict[str, object] = {}
    for key, value in result.metrics.items():
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            continue
        if key.startswith(_HEADLINE_PREFIXES) or key in ("stage_seconds", "checkpoint_bytes"):
            metadata[key] = (
                dg.MetadataValue.float(float(value))
                if isinstance(value, float)
                else dg.MetadataValue.int(int(value))
                if isinstance(value, int)
                else str(value)
            )
    metadata["metrics"] = dg.MetadataValue.json(
        {
            k: v
            for k, v in result.metrics.items()
            if not (isinstance(v, float) and not math.isfinite(v))
        }
    )
    for path in result.outputs:
        metadata[f"path/{Path(path).name}"] = dg.MetadataValue.path(str(path))
    for key, value in result.info.items():  # e.g. teacher_source, teacher_path, teacher_model_type
        metadata[key] = dg.MetadataValue.path(value) if key.endswith("_path") else str(value)
    if "checkpoint_md5" in result.metrics:
        metadata["checkpoint_md5"] = str(result.metrics["checkpoint_md5"])
    if result.mlflow_run_id:
        metadata["mlflow_run_id"] = result.mlflow_run_id
        metadata["mlflow_run"] = dg.MetadataValue.url(mlflow_url(result.mlflow_run_id))
    for out, digest in (dvc_hashes or {}).items():
        metadata[f"dvc_md5/{out}"] = digest
    if result.pictures:
        metadata["pictures"] = dg.MetadataValue.md(picture_markdown(result.pictures))
    metadata.update(_export_metadata(result.metrics) if result.stage.startswith("export_") else {})
    for output in result.outputs:  # the agreement report's summary, readable in the UI
        summary = Path(output) / "summary.md"
        if summary.is_file():
            metadata["summary"] = dg.MetadataValue.md(summary.read_text())
    return metadata


def _export_metadata(m: dict) -> dict:
    """An ONNX export's figures as first-class entries."""
    return {
        "onnx_bytes": dg.MetadataValue.int(int(m["onnx_bytes"])),
        "onnx_sha256": str(m["onnx_sha256"]),
        "onnx_md5": str(m["onnx_md5"]),
        "parity_max_rel_diff": dg.MetadataValue.float(float(m["parity_max_rel_diff"])),
        "cpu_latency_ms": dg.MetadataValue.float(float(m["cpu_latency_ms"])),
        "latency_size": str(m["latency_size"]),
        "dynamic_shapes": bool(m["dynamic_shapes"]),
    }
