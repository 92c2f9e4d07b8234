"""The lineage as Dagster sees it: one asset per DVC stage, in the order they run.

The assets (orchestration.definitions), their checks (orchestration.dagster_checks) and the
report of DVC's runs (orchestration.dagster_report) all read this one list, so an asset, the
stage it runs, the DVC stage that records it and the metrics file it is checked on never drift.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from orchestration.config import Params, params_section
from orchestration.dagster_dvc import declared_params
from orchestration.fingerprints import code_digest


@dataclass(frozen=True)
class AssetStage:
    """Asset `key` is made by stage `stage` (of `student`, for per-student stages)."""

    key: str
    stage: str
    student: str | None = None
    deps: tuple[str, ...] = ()

    @property
    def dvc_stage(self) -> str:
        """Its name in dvc.yaml / dvc.lock (`student@vit` for a foreach stage)."""
        return f"{self.stage}@{self.student}" if self.student else self.stage

    @property
    def record(self) -> str:
        """The name its metrics are written under (`metrics/<record>.json`)."""
        return f"{self.stage}_{self.student}" if self.student else self.stage


def expert_assets(params: Params | None) -> list[str]:
    """The model assets whose checkpoints vote in the agreement report."""
    if params is None:
        return ["teacher_checkpoint"]
    deps = []
    for entry in params.agreement.experts:
        if entry == "teacher":
            deps.append("teacher_checkpoint")
        elif entry.startswith("student:"):
            deps.append(f"student_checkpoint_{entry.split(':', 1)[1]}")
    return deps


def lineage(params: Params | None) -> list[AssetStage]:
    """Every asset of the lineage, each after the assets it depends on."""
    students = list(params.students) if params is not None else []
    data = ("labeled_data", "unlabeled_images", "target_eval_set")
    return [
        AssetStage("labeled_data", "labeled_data"),
        AssetStage("unlabeled_images", "unlabeled_images"),
        AssetStage("target_eval_set", "target_eval"),
        AssetStage("teacher_checkpoint", "teacher", deps=("labeled_data", "target_eval_set")),
        AssetStage(
            "pseudo_labels", "pseudo_labels", deps=("teacher_checkpoint", "unlabeled_images")
        ),
        *(
            AssetStage(f"student_checkpoint_{name}", "student", name, (*data, "pseudo_labels"))
            for name in students
        ),
        *(
            AssetStage(f"student_onnx_{name}", "export", name, (f"student_checkpoint_{name}",))
            for name in students
        ),
        AssetStage(
            "expert_agreement_report",
            "agreement",
            deps=(*expert_assets(params), "target_eval_set"),
        ),
        AssetStage(
            "benchmark_report",
            "benchmark_report",
            deps=("teacher_checkpoint", *(f"student_checkpoint_{name}" for name in students)),
        ),
    ]


def code_version(spec: AssetStage, params: Params | None) -> str | None:
    """What DVC reruns the stage for besides its inputs: its code deps and its params' values.

    A Dagster asset with this code version, materialised with another one, shows as stale, as
    `dvc status` would report the stage changed.
    """
    if params is None:
        return None
    code_digest.cache_clear()  # the code may have changed since this process first read it
    values = {key: params_section(params, key) for key in declared_params(spec.dvc_stage)}
    text = json.dumps({"code": code_digest(spec.stage), "params": values}, sort_keys=True)
    return hashlib.md5(text.encode()).hexdigest()
