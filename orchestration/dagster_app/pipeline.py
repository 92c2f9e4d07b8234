"""The `pipeline` resource: where the lineage lives and which params a Dagster run uses."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from pydantic import Field

from orchestration.dagster_app.config import ParamsOverrides, override_items
from orchestration.lineage.paths import LineagePaths, default_paths, experiment_paths
from orchestration.params.profiles import profile_params
from orchestration.params.schema import Params, load_params

REPO_ROOT = Path(os.environ.get("DEPTH_DISTILL_ROOT", Path(__file__).resolve().parents[2]))


class PipelineResource(dg.ConfigurableResource):
    """Where the lineage lives and which params it runs with.

    Leave `profile` and `overrides` empty to materialise the default, DVC-tracked lineage
    (params.yaml). A `profile` (a file of profiles/, e.g. "smoke") runs that profile's merge
    instead; `overrides` sets single params, typed like params.yaml (e.g. teacher: {epochs: 2}).
    Params that differ from params.yaml or an explicit `experiment` name make the run an
    experiment: outputs go to experiments/<name>/ and MLflow runs are tagged with it.
    """

    root: str = str(REPO_ROOT)
    params_file: str = "params.yaml"
    profile: str = Field("", description="a profile of profiles/ (default: params.yaml)")
    overrides: ParamsOverrides = Field(
        default_factory=ParamsOverrides,
        description="params to change for this run, shaped like params.yaml; null keeps a value",
    )
    experiment: str = Field("", description="name of the experiment (experiments/<name>/)")
    commit_to_dvc: bool = True

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Validate the params and the experiment's name before any stage runs: a bad value
        fails the run naming its key."""
        self.params()
        if self.experiment:
            experiment_paths(Path(self.root), self.experiment)

    def params(self) -> Params:
        items = override_items(self.overrides)
        if self.profile:
            return profile_params(Path(self.root), self.profile, items)
        return load_params(Path(self.root) / self.params_file, items)

    def experiment_name(self, run_id: str) -> str | None:
        if self.experiment:
            return self.experiment
        return f"dagster-{run_id[:8]}" if self._differs_from_params_file() else None

    def _differs_from_params_file(self) -> bool:
        if override_items(self.overrides):
            return True
        return bool(self.profile) and self.params() != load_params(
            Path(self.root) / self.params_file
        )

    def paths(self, run_id: str) -> LineagePaths:
        name = self.experiment_name(run_id)
        root = Path(self.root)
        return experiment_paths(root, name) if name else default_paths(root)
