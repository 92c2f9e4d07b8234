"""One name for each run of a lineage stage, and every spelling of it from one place.

A stage runs once (`teacher`) or once per student (`student`, `export` in dvc.yaml's `foreach`).
Each tool spells a run its own way: dvc.yaml and dvc.lock `student@lite1`; metrics, reports,
locks and MLflow's `stage` tag `student_lite1`; Dagster `student_checkpoint_lite1`; params.yaml
`students.lite1`; an agreement expert `student:lite1`. `StageId` gives them all, so no caller
builds one with an f-string.
"""

from __future__ import annotations

from dataclasses import dataclass

# Stages that run once per entry of params.yaml's `students` (a control is no dvc.yaml stage).
PER_STUDENT = ("student", "export", "control")
# Dagster asset keys that differ from the stage's name; `{}` is the student's name.
ASSET_KEYS = {
    "target_eval": "target_eval_set",
    "teacher": "teacher_checkpoint",
    "student": "student_checkpoint_{}",
    "export": "student_onnx_{}",
    "agreement": "expert_agreement_report",
}
EXPERT_PREFIX = "student:"


@dataclass(frozen=True)
class StageId:
    """Stage `stage` of dvc.yaml, for `student` when it runs once per student."""

    stage: str
    student: str | None = None

    def __post_init__(self):
        if (self.stage in PER_STUDENT) != (self.student is not None):
            raise ValueError(
                f"stage {self.stage!r} "
                + (
                    "needs a student name (--student NAME)"
                    if self.student is None
                    else f"runs once for the whole lineage, not per student ({self.student!r})"
                )
            )

    @classmethod
    def of_student(cls, name: str) -> StageId:
        return cls("student", name)

    @classmethod
    def parse_dvc(cls, name: str) -> StageId:
        """The run dvc.yaml / dvc.lock call `name` (`student@lite1`, `teacher`)."""
        stage, _, student = name.partition("@")
        return cls(stage, student or None)

    @property
    def dvc(self) -> str:
        """Its name in dvc.yaml and dvc.lock: `student@lite1`."""
        return f"{self.stage}@{self.student}" if self.student else self.stage

    @property
    def record(self) -> str:
        """Its files' name (metrics/<record>.json, reports/<record>/, .locks/<record>.lock)
        and its MLflow runs' `stage` tag: `student_lite1`."""
        return f"{self.stage}_{self.student}" if self.student else self.stage

    @property
    def asset(self) -> str:
        """Its Dagster asset key: `student_checkpoint_lite1`."""
        key = ASSET_KEYS.get(self.stage, self.stage)
        return key.format(self.student) if self.student else key

    @property
    def params_key(self) -> str:
        """The params.yaml section of the student it runs for: `students.lite1`."""
        return f"students.{self.student}" if self.student else self.stage


def expert_entry(student: str) -> str:
    """How params.yaml names a student as an agreement expert: `student:lite1`."""
    return f"{EXPERT_PREFIX}{student}"


def expert_student(entry: str) -> str | None:
    """The student an expert entry names (`student:lite1` -> `lite1`), or None."""
    return entry[len(EXPERT_PREFIX) :] if entry.startswith(EXPERT_PREFIX) else None
