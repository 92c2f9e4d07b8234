"""The lineage as Dagster sees it: one asset per DVC stage, in the order they run.

The assets (orchestration.dagster_app.definitions), their checks (orchestration.dagster_app.checks) and the
report of DVC's runs (orchestration.dagster_app.report) all read this one list, so an asset, the
stage it runs, the DVC stage that records it and the metrics file it is checked on never drift.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from orchestration.lineage.dvc_lock import declared_params
from orchestration.lineage.fingerprints import code_digest
from orchestration.lineage.stage_id import StageId, expert_student

DATA_STAGES = ("labeled_data", "unlabeled_images", "target_eval")
from orchestration.params.schema import Params, params_section


@dataclass(frozen=True)
class AssetStage:
    """The asset that run `id` of a stage materialises, after the assets `deps`."""

    id: StageId
    deps: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return self.id.asset

    @property
    def stage(self) -> str:
        return self.id.stage

    @property
    def student(self) -> str | None:
        return self.id.student

    @property
    def dvc_stage(self) -> str:
        """Its name in dvc.yaml / dvc.lock (`student@lite1` for a foreach stage)."""
        return self.id.dvc

    @property
    def record(self) -> str:
        """The name its metrics are written under (`metrics/<record>.json`)."""
        return self.id.record


def expert_assets(params: Params | None) -> list[str]:
    """The model assets whose checkpoints vote in the agreement report."""
    if params is None:
        return [StageId("teacher").asset]
    deps = []
    for entry in params.agreement.experts:
        student = expert_student(entry)
        if entry == "teacher":
            deps.append(StageId("teacher").asset)
        elif student is not None:
            deps.append(StageId.of_student(student).asset)
    return deps


def lineage(params: Params | None) -> list[AssetStage]:
    """Every asset of the lineage, each after the assets it depends on."""
    students = list(params.students) if params is not None else []
    labeled, unlabeled, target = (StageId(s).asset for s in DATA_STAGES)
    teacher, pseudo = StageId("teacher").asset, StageId("pseudo_labels").asset
    models = (teacher, *(StageId.of_student(name).asset for name in students))
    return [
        *(AssetStage(StageId(stage)) for stage in DATA_STAGES),
        AssetStage(StageId("teacher"), (labeled, target)),
        AssetStage(StageId("pseudo_labels"), (teacher, unlabeled)),
        *(
            AssetStage(StageId.of_student(name), (labeled, unlabeled, target, pseudo))
            for name in students
        ),
        *(
            AssetStage(StageId("export", name), (StageId.of_student(name).asset,))
            for name in students
        ),
        AssetStage(StageId("agreement"), (*expert_assets(params), target)),
        AssetStage(StageId("zeroshot_report"), models),
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
