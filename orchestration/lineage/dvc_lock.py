"""What DVC recorded about a stage, in the terms Dagster versions assets with.

A stage's entry in `dvc.lock` is the state DVC vouches for: its deps, params and outputs with
their hashes. Its digest identifies one run of the stage (the reporter never reports the same
digest twice); the hashes of the outputs `dvc.yaml` declares (not metrics or plots) make the
asset's data version, so a Dagster-made and a DVC-made materialisation of the same bytes carry
the same version and a downstream asset made from other bytes shows as stale.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from orchestration.lineage.dvc_file import stage_outs, stage_params
from orchestration.lineage.stage_id import StageId

# Materialisation tag holding the digest of the dvc.lock entry the outputs were recorded under.
LOCK_TAG = "depth-distill/dvc_lock"


@dataclass(frozen=True)
class LockState:
    """One stage's entry of dvc.lock: its digest, the asset's data version, every output's hash."""

    digest: str
    data_version: str
    hashes: dict[str, str]


def _parts(dvc_stage: str) -> tuple[str, str | None]:
    stage = StageId.parse_dvc(dvc_stage)
    return stage.stage, stage.student


def _read_yaml(path: Path) -> dict:
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def declared_outs(dvc_stage: str) -> list[str]:
    """The stage's `outs` (its data or model; metrics and plots are reported as metadata)."""
    return stage_outs(*_parts(dvc_stage))


def declared_params(dvc_stage: str) -> list[str]:
    """The params.yaml keys the stage's `params` list names."""
    return stage_params(*_parts(dvc_stage))


def lock_state(root: Path, dvc_stage: str) -> LockState | None:
    """The stage's current dvc.lock entry, or None when DVC has not recorded the stage."""
    entry = (_read_yaml(root / "dvc.lock").get("stages") or {}).get(dvc_stage)
    if not entry:
        return None
    hashes = {out["path"]: out.get("md5", "") for out in entry.get("outs", [])}
    outs = declared_outs(dvc_stage)
    versioned = [f"{path}:{hashes.get(path, '')}" for path in sorted(outs)]
    return LockState(
        digest=hashlib.md5(json.dumps(entry, sort_keys=True).encode()).hexdigest(),
        data_version=hashlib.md5("\n".join(versioned).encode()).hexdigest(),
        hashes=hashes,
    )
