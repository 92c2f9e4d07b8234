"""What dvc.yaml declares of each stage: its code deps, params keys and output paths.

dvc.yaml is the one declaration of the lineage's paths and of the params each stage reads,
because DVC must read them there. The rest of the pipeline reads them from it:
`orchestration.lineage.paths` takes the output paths, `orchestration.stages.base` the params keys it logs,
`orchestration.lineage.fingerprints` the code a stage's outputs are fingerprinted with. A `foreach`
stage (one per student) is read from its template, `${key}` standing for the student's name.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

# The checkout whose code this process runs: its dvc.yaml describes this code's lineage.
CODE_ROOT = Path(__file__).resolve().parents[2]
DVC_FILE = CODE_ROOT / "dvc.yaml"
KEY = "${key}"


@lru_cache(maxsize=4)
def read_stages(dvc_file: Path = DVC_FILE) -> dict:
    """The `stages` mapping of `dvc_file` (read once per process)."""
    if not dvc_file.is_file():
        raise FileNotFoundError(f"{dvc_file}: missing; it declares every stage of the lineage")
    return yaml.safe_load(dvc_file.read_text())["stages"]


def _template(stage: str, dvc_file: Path) -> dict:
    stages = read_stages(dvc_file)
    if stage not in stages:
        raise KeyError(f"{dvc_file}: no stage {stage!r} (stages: {', '.join(stages)})")
    entry = stages[stage]
    return entry.get("do", entry)


def _listed(stage: str, field: str, key: str | None, dvc_file: Path) -> list[str]:
    """The paths (or params keys) of one list of the stage; entries are `path` or
    `{path: options}`; `${key}` is replaced by `key` when one is given."""
    items = _template(stage, dvc_file).get(field) or []
    names = [item if isinstance(item, str) else next(iter(item)) for item in items]
    return [n.replace(KEY, key) for n in names] if key is not None else names


def stage_deps(stage: str, key: str | None = None, dvc_file: Path = DVC_FILE) -> list[str]:
    return _listed(stage, "deps", key, dvc_file)


def stage_params(stage: str, key: str | None = None, dvc_file: Path = DVC_FILE) -> list[str]:
    """The params.yaml keys the stage reads (`students.${key}` for a student's stages)."""
    return _listed(stage, "params", key, dvc_file)


def stage_outs(stage: str, key: str | None = None, dvc_file: Path = DVC_FILE) -> list[str]:
    """The stage's outputs (its data or models; metrics and plots are listed apart)."""
    return _listed(stage, "outs", key, dvc_file)


def stage_written(stage: str, key: str | None = None, dvc_file: Path = DVC_FILE) -> list[str]:
    """Every path the stage writes: its outputs, metrics and plots (what DVC locks for it)."""
    return [
        p for field in ("outs", "metrics", "plots") for p in _listed(stage, field, key, dvc_file)
    ]


def stage_out(stage: str, name: str | None = None, dvc_file: Path = DVC_FILE) -> str:
    """The stage's one output, or the one whose last path component is `name` (e.g. the
    labeled data's `train` and `val`); anything else is an error naming dvc.yaml's stage."""
    outs = stage_outs(stage, dvc_file=dvc_file)
    chosen = [o for o in outs if name is None or Path(o).name == name]
    if len(chosen) != 1:
        wanted = f"one output named {name!r}" if name else "exactly one output"
        raise ValueError(f"{dvc_file}: stage {stage!r} must declare {wanted}, it has {outs}")
    return chosen[0]
