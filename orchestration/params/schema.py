"""The schema of params.yaml: every knob of every stage, validated before anything runs.

The pieces come from `depth_core` (render, import, training and voting configs); this module
only composes them, so a typo such as `teacher.epoch` or `epochs: ten` fails with the dotted
key named, before a single image is rendered.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from depth_core.data.importers import (
    FOLDER_FORMAT,
    ImageImportConfig,
    RGBDFormat,
    RGBDImportConfig,
    check_folder_only_fields,
)
from depth_core.device import check_device_name
from depth_core.export.config import ExportConfig
from depth_core.inference import check_scales
from depth_core.model_loading import check_model_path
from depth_core.models import CheckpointError
from depth_core.synth.render import RenderConfig
from depth_core.training.config import TrainConfig
from depth_core.voting.pairs import PairConfig
from depth_core.zeroshot.suite import SUITES, SUITES_WITH_SPLITS
from orchestration.lineage.stage_id import StageId, expert_student


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _require_folder(section: BaseModel, key: str):
    """A `source: folder` section needs its `folder` import settings."""
    if section.source == "folder" and section.folder is None:
        raise ValueError(f"{key}.folder must be set when {key}.source is 'folder'")
    return section


WEBDATASET = "webdataset"
WorkingSize = tuple[PositiveInt, PositiveInt]
_URLS_HELP = (
    "with source webdataset: tar shards of encoded images, as a brace pattern "
    "(/data/photos-{000000..000099}.tar), a list, local paths or pipe: commands "
    "(pipe:aws s3 cp s3://bucket/x.tar -)"
)
_WORKING_SIZE_HELP = (
    "with source webdataset: (height, width) every image is fitted to when read from the tars "
    "(resized to cover it, then centre-cropped), the size pseudo-labels and training see"
)
_DEPTH_SCALE_HELP = (
    "with source webdataset: raw .depth.png / .depth.npy values are divided by this "
    "(16-bit PNG in millimetres: 1000)"
)


def _require_urls(section: BaseModel, key: str):
    """A `source: webdataset` section needs `urls`, and no other source reads them."""
    if section.source == WEBDATASET and not section.urls:
        raise ValueError(
            f"{key}.urls must be set when {key}.source is 'webdataset' (tar paths or brace "
            "patterns, e.g. /data/photos-{000000..000099}.tar)"
        )
    if section.source != WEBDATASET and section.urls:
        raise ValueError(
            f"{key}.urls is read only with {key}.source 'webdataset' "
            f"(source is {section.source!r}); set it to null"
        )
    return section


class LabeledDataParams(StrictModel):
    """labeled_data: the synthetic renderer by default, or a user's folder of RGB-D pairs."""

    source: Literal["synthetic", "folder", "webdataset"] = "synthetic"
    format: RGBDFormat = Field(
        FOLDER_FORMAT,
        description="with source folder: the folder's layout, folder (pairs by file name) or a "
        "public set's own (hypersim, vkitti2, tartanair, blendedmvs)",
    )
    n_train: int = Field(2000, ge=1)
    n_val: int = Field(128, ge=1)
    shard_size: int = Field(256, ge=1)
    seed: int = Field(0, ge=0)
    workers: int = Field(
        1, ge=1, description="processes rendering shards in parallel (same files for any count)"
    )
    render: RenderConfig = Field(default_factory=RenderConfig)
    folder: RGBDImportConfig | None = None
    val_fraction: float = Field(0.05, gt=0, lt=1)
    urls: str | list[str] | None = Field(None, description=_URLS_HELP)
    working_size: WorkingSize = Field((96, 128), description=_WORKING_SIZE_HELP)
    depth_scale: float = Field(1.0, gt=0, description=_DEPTH_SCALE_HELP)

    @model_validator(mode="after")
    def _folder_needs_config(self):
        _require_folder(self, "data.labeled")
        _require_urls(self, "data.labeled")
        if self.folder is not None:
            if self.folder.format not in (FOLDER_FORMAT, self.format):
                raise ValueError(
                    f"data.labeled.folder.format ({self.folder.format!r}) contradicts "
                    f"data.labeled.format ({self.format!r}); set data.labeled.format only"
                )
            check_folder_only_fields(self.folder, self.format, prefix="data.labeled.folder.")
        return self

    def import_config(self) -> RGBDImportConfig:
        """The importer's settings: `folder` read as `format` (this section's one source)."""
        if self.folder is None:
            raise ValueError("data.labeled.folder must be set to import a folder")
        return RGBDImportConfig.model_validate({**self.folder.model_dump(), "format": self.format})


class UnlabeledDataParams(StrictModel):
    """unlabeled_images: the photo-like target domain by default, or a user's image folder."""

    source: Literal["target", "folder", "webdataset"] = "target"
    n_images: int = Field(3000, ge=1)
    shard_size: int = Field(256, ge=1)
    seed: int = Field(1, ge=0)
    workers: int = Field(
        1, ge=1, description="processes rendering shards in parallel (same files for any count)"
    )
    render: RenderConfig = Field(default_factory=lambda: RenderConfig(domain="target"))
    folder: ImageImportConfig | None = None
    urls: str | list[str] | None = Field(None, description=_URLS_HELP)
    working_size: WorkingSize = Field((96, 128), description=_WORKING_SIZE_HELP)

    @model_validator(mode="after")
    def _folder_needs_config(self):
        _require_folder(self, "data.unlabeled")
        return _require_urls(self, "data.unlabeled")


class TargetEvalParams(StrictModel):
    """The held-out ground truth of the target domain (or a user's RGB-D folder): evaluation only."""

    source: Literal["target", "folder", "webdataset"] = "target"
    n_images: int = Field(128, ge=1)
    seed: int = Field(2, ge=0)
    folder: RGBDImportConfig | None = None
    urls: str | list[str] | None = Field(None, description=_URLS_HELP)
    working_size: WorkingSize = Field((96, 128), description=_WORKING_SIZE_HELP)
    depth_scale: float = Field(1.0, gt=0, description=_DEPTH_SCALE_HELP)

    @model_validator(mode="after")
    def _folder_needs_config(self):
        _require_folder(self, "data.target_eval")
        return _require_urls(self, "data.target_eval")


class DataParams(StrictModel):
    labeled: LabeledDataParams = Field(default_factory=LabeledDataParams)
    unlabeled: UnlabeledDataParams = Field(default_factory=UnlabeledDataParams)
    target_eval: TargetEvalParams = Field(default_factory=TargetEvalParams)


class PseudoLabelParams(StrictModel):
    """Teacher inference on the unlabeled images; flips and input scales are averaged."""

    batch_size: int = Field(32, ge=1)
    amp: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    flip_tta: bool = True
    scales: list[float] = Field(
        default_factory=lambda: [1.0],
        description="input resize factors whose predictions are averaged (multi-scale TTA)",
    )

    @field_validator("scales")
    @classmethod
    def _positive_scales(cls, scales: list[float]) -> list[float]:
        return list(check_scales(scales))


def resolve_path(path: str | Path, root: str | Path | None) -> Path:
    """A params path: absolute as given, relative to the repository root (params.yaml's folder)."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else Path(root or Path.cwd()) / path


_TEACHER_PATH_KINDS = {
    "checkpoint": "a depth-distill .safetensors file or the authors' Depth Anything .pth file",
    "transformers": "a local Hugging Face depth-estimation folder",
}


class TeacherParams(TrainConfig):
    """The teacher: trained here on labeled data (`source: train`), or one you already have.

    `checkpoint` is a depth-distill .safetensors file and `transformers` a local Hugging Face
    depth-estimation folder (Depth Anything V1/V2, DPT); both are used as they are, and of the
    training keys only device, batch_size, seed, val_max_images and n_samples are read (they set
    how the teacher is evaluated). `path` is checked here, before any stage deletes or runs
    anything; a relative path is relative to the folder of params.yaml. Ignored for `train`.
    """

    source: Literal["train", "checkpoint", "transformers"] = "train"
    path: str | None = Field(
        None,
        validate_default=True,
        description="the checkpoint file (source: checkpoint) or model folder (transformers)",
    )

    @field_validator("path")
    @classmethod
    def _existing_teacher(cls, path: str | None, info: ValidationInfo) -> str | None:
        source = info.data.get("source")
        if source in (None, "train"):
            return path
        if path is None:
            raise ValueError(
                f"teacher.path is required when teacher.source is {source!r} "
                f"({_TEACHER_PATH_KINDS[source]})"
            )
        root = (info.context or {}).get("root")
        try:
            check_model_path(resolve_path(path, root), source)
        except CheckpointError as error:
            raise ValueError(f"teacher.path {path!r}: {error}") from None
        return path

    def train_config(self) -> TrainConfig:
        """The training part alone: what `train` receives and what a trained teacher's outputs
        are fingerprinted with (unchanged by the teacher-source keys)."""
        return TrainConfig.model_validate(self.model_dump(exclude={"source", "path"}))


class AgreementParams(StrictModel):
    """expert_agreement_report: which checkpoints vote, on which images, with which pairs."""

    experts: list[str] = Field(
        default_factory=lambda: ["teacher"],
        description="'teacher', 'student:<name>' or a path to a checkpoint file.",
    )
    n_images: int = Field(128, ge=1)
    report_images: int = Field(6, ge=1)
    batch_size: int = Field(16, ge=1)
    pairs: PairConfig = Field(default_factory=PairConfig)

    @model_validator(mode="after")
    def _at_least_two(self):
        if len(self.experts) < 2:
            raise ValueError("agreement.experts needs at least 2 experts")
        return self


class ZeroshotParams(StrictModel):
    """zeroshot_report: the zero-shot benchmarks the teacher and every student are scored on,
    each read from its folder as published. No roots (the default): the stage does nothing."""

    roots: dict[str, str] = Field(
        default_factory=dict,
        description=f"benchmark -> its folder as published ({', '.join(SUITES)}); relative "
        "paths start at params.yaml's folder; a missing folder is skipped with its reason",
    )
    splits: dict[str, str] = Field(
        default_factory=dict,
        description=f"another split file for {' or '.join(SUITES_WITH_SPLITS)} "
        "(default: the one the benchmark's folder holds)",
    )
    max_images: int | None = Field(
        None, ge=1, description="first N test images of each benchmark (null: all of them)"
    )
    batch_size: int = Field(4, ge=1)
    flip_tta: bool = Field(False, description="average each prediction with its mirror image")

    @model_validator(mode="before")
    @classmethod
    def _null_is_empty(cls, raw):
        return {} if raw is None else raw

    @field_validator("roots")
    @classmethod
    def _known_benchmarks(cls, roots: dict[str, str]) -> dict[str, str]:
        for name in roots:
            if name not in SUITES:
                raise ValueError(f"{name!r} is no benchmark; choose from {', '.join(SUITES)}")
        return roots

    @model_validator(mode="after")
    def _splits_of_configured_benchmarks(self):
        for name in self.splits:
            if name not in SUITES_WITH_SPLITS:
                raise ValueError(
                    f"splits.{name}: only {', '.join(SUITES_WITH_SPLITS)} take a split file"
                )
            if name not in self.roots:
                raise ValueError(f"splits.{name}: no roots.{name} to apply it to")
        return self


class ExportParams(ExportConfig):
    """export@<student>: each student checkpoint as models/onnx/<student>.onnx, parity-checked,
    and its single-image CPU latency through onnxruntime at the student's training size."""

    latency_iterations: int = Field(10, ge=1, description="timed runs (the median counts)")
    latency_threads: int = Field(
        1, ge=0, description="onnxruntime intra-op threads for the latency (0: all cores)"
    )

    def export_config(self) -> ExportConfig:
        """The export part alone, what `depth_core.export` receives."""
        return ExportConfig.model_validate(self.model_dump(include=set(ExportConfig.model_fields)))


# A student's name is part of its folders, files and Dagster asset keys (models/students/NAME),
# and a key of dotted overrides (students.NAME.epochs): no separators, no `..`.
STUDENT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")


class Params(StrictModel):
    device: str = Field(
        "auto",
        description="auto | cpu | cuda | cuda:N: every stage's device unless a training "
        "config names its own",
    )
    data: DataParams = Field(default_factory=DataParams)
    teacher: TeacherParams
    pseudo_labels: PseudoLabelParams = Field(default_factory=PseudoLabelParams)
    students: dict[str, TrainConfig]
    agreement: AgreementParams
    export: ExportParams = Field(default_factory=ExportParams)
    zeroshot: ZeroshotParams = Field(default_factory=ZeroshotParams)

    @field_validator("device")
    @classmethod
    def _known_device(cls, device: str) -> str:
        return check_device_name(device)

    @field_validator("students")
    @classmethod
    def _safe_student_names(cls, students: dict[str, TrainConfig]) -> dict[str, TrainConfig]:
        for name in students:
            if not STUDENT_NAME.fullmatch(name):
                raise ValueError(
                    f"students key {name!r}: a student's name becomes its folder "
                    "(models/students/NAME); use letters, digits, '_' and '-'"
                )
        return students

    @model_validator(mode="after")
    def _finite_numbers(self):
        """NaN passes no range check but infinity passes every lower bound (`lr: .inf`), and
        no knob means anything there."""
        bad = [
            f"{key} = {value}"
            for key, value in _numbers(self.model_dump())
            if not math.isfinite(value)
        ]
        if bad:
            raise ValueError(f"{', '.join(bad)}: every number must be finite")
        return self

    @model_validator(mode="after")
    def _experts_exist(self, info: ValidationInfo):
        root = (info.context or {}).get("root")
        seen: dict[str, str] = {}
        for index, expert in enumerate(self.agreement.experts):
            key = f"agreement.experts[{index}] {expert!r}"
            _check_expert(expert, key, self.students, root)
            name = expert_name(expert)
            if name in seen:
                raise ValueError(f"{key}: the same expert as {seen[name]!r} (named {name!r})")
            seen[name] = expert
        return self


def expert_name(entry: str) -> str:
    """How an `agreement.experts` entry is named in the report: teacher, student_NAME, a stem."""
    if entry == "teacher":
        return "teacher"
    student = expert_student(entry)
    if student is not None:
        return StageId.of_student(student).record
    return Path(entry).stem


def _numbers(node: Any, prefix: str = ""):
    """(dotted key, value) of every float in a dumped params tree (list items by index)."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        if isinstance(value, float):
            yield f"{prefix}{key}", value
        elif isinstance(value, dict | list | tuple):
            yield from _numbers(value, f"{prefix}{key}.")


def _check_expert(entry: str, key: str, students: dict, root: str | None) -> None:
    """An expert is the teacher, a student of `students`, or an existing checkpoint path."""
    if entry == "teacher":
        return
    if expert_student(entry) is not None:
        if expert_student(entry) not in students:
            raise ValueError(f"{key} names no entry of 'students' (known: {sorted(students)})")
        return
    if not resolve_path(entry, root).exists():
        raise ValueError(
            f"{key}: not 'teacher', 'student:<name>' (students: {sorted(students)}) "
            "or an existing checkpoint path"
        )


class ParamsError(ValueError):
    """params.yaml is unreadable or does not match the schema; the message names the keys."""


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: {exc.error_count()} invalid parameter(s)"]
    lines += [f"  {_error_line(err)}" for err in exc.errors()]
    return "\n".join(lines)


_LEADING_KEY = re.compile(r"(?:Value error, )?([A-Za-z_]\w*(?:\.\w+)*)")


def _error_line(err: dict) -> str:
    """`dotted.key: message`. A check of a whole section (`teacher.perturb`) whose message
    starts with one of the section's keys (`blur_sigma must ...`) names that key in full; a
    check of the whole file names its keys itself."""
    loc = [str(part) for part in err["loc"]]
    msg = err["msg"]
    if not loc:
        return msg.removeprefix("Value error, ")
    lead = _LEADING_KEY.match(msg)
    if lead and isinstance(err.get("input"), dict):
        parts = lead.group(1).split(".")
        if parts[0] == loc[-1]:
            parts = parts[1:]
        if parts and parts[0] in err["input"]:
            loc += parts
            if msg[lead.end() :].startswith(":"):
                msg = msg[lead.end() + 1 :].lstrip()
    return f"{'.'.join(loc)}: {msg}"


def parse_params(
    raw: dict[str, Any], source: str = "params", root: str | Path | None = None
) -> Params:
    """Validate a params mapping; relative paths in it (teacher.path) are relative to `root`
    (default: the current directory)."""
    try:
        return Params.model_validate(raw, context={"root": str(root) if root else None})
    except ValidationError as exc:
        raise ParamsError(_format_errors(exc, source)) from None


def load_params(path: str | Path = "params.yaml", overrides: list[str] | None = None) -> Params:
    """Read and validate params.yaml, applying `key.sub=value` overrides (YAML-typed values)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ParamsError(f"{path}: parameters file not found") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: top level must be a mapping")
    for item in overrides or []:
        apply_override(raw, item)
    return parse_params(raw, str(path), root=path.resolve().parent)


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Set `a.b.c=value` in a nested dict; the value is parsed as YAML (`3`, `true`, `[1,2]`)."""
    if "=" not in item:
        raise ParamsError(f"override {item!r}: expected KEY=VALUE")
    key, value = item.split("=", 1)
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ParamsError(f"override {item!r}: {part!r} is not a mapping")
        node = child
    node[parts[-1]] = yaml.safe_load(value)


def params_section(params: Params, dotted: str) -> Any:
    """The value at a dotted path, JSON-ready (used to log exactly the keys a stage reads)."""
    node: Any = params.model_dump(mode="json")
    for part in dotted.split("."):
        node = node[part]
    return node
