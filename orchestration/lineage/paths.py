"""Where every lineage step writes its outputs: the paths dvc.yaml declares, read from it.

The default lineage lives in the repository root and is what DVC versions. An experiment
(overridden params from the Dagster launchpad) writes under `experiments/<name>/` instead and
reads any upstream output it has not produced itself from the default lineage, so it never
overwrites a DVC-tracked file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestration.lineage.dvc_file import KEY, stage_out

# Each stage's outputs as dvc.yaml declares them (the one place they are written).
LABELED_TRAIN = stage_out("labeled_data", "train")
LABELED_VAL = stage_out("labeled_data", "val")
UNLABELED = stage_out("unlabeled_images")
TARGET_EVAL = stage_out("target_eval")
PSEUDO_LABELS = stage_out("pseudo_labels")
TEACHER = stage_out("teacher")
STUDENT = stage_out("student")  # models/students/${key}
STUDENTS = Path(STUDENT).parent.as_posix()
ONNX = Path(stage_out("export")).parent.as_posix()
AGREEMENT = stage_out("agreement")
ZEROSHOT_REPORT = stage_out("zeroshot_report")
CONTROLS = "models/controls"  # labeled-only controls (`depth-distill ablation`), no DVC stage
# Every stage's metrics go to metrics/<stage>.json, its pictures to reports/<stage>/ (also for
# runs dvc.yaml does not declare, such as controls); tests check dvc.yaml's entries follow this.
METRICS = "metrics"
REPORTS = "reports"
TRANSFORMERS_DIR = "transformers"  # an existing Hugging Face teacher, inside TEACHER


@dataclass(frozen=True)
class LineagePaths:
    root: Path
    fallback: Path | None = None

    def out(self, relative: str) -> Path:
        """A path this run writes."""
        return self.root / relative

    def inp(self, relative: str) -> Path:
        """A path this run reads: its own output when present, else the default lineage's."""
        own = self.root / relative
        if own.exists() or self.fallback is None:
            return own
        return self.fallback / relative

    def student(self, name: str) -> str:
        return STUDENT.replace(KEY, name)

    def control(self, name: str) -> str:
        return f"{CONTROLS}/{name}"

    def metrics_file(self, stage: str) -> Path:
        return self.out(f"{METRICS}/{stage}.json")

    def report_dir(self, stage: str) -> Path:
        return self.out(f"{REPORTS}/{stage}")

    @property
    def is_experiment(self) -> bool:
        return self.fallback is not None

    @property
    def default_root(self) -> Path:
        """The default lineage's root (where the shared MLflow store lives), also for experiments."""
        return self.fallback or self.root


def default_paths(root: Path) -> LineagePaths:
    return LineagePaths(root=root.resolve())


def experiment_paths(root: Path, name: str) -> LineagePaths:
    """experiments/<name>/, the name's other characters made `_`; `.` and `..` are refused: they
    would write into experiments/ itself or over the default lineage."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "experiment"
    if safe in (".", ".."):
        raise ValueError(f"experiment {name!r}: not a folder name under experiments/")
    return LineagePaths(root=(root / "experiments" / safe).resolve(), fallback=root.resolve())
