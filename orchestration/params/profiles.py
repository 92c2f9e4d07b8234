"""Profiles: `params.yaml` made from one default and small overlays.

`profiles/default.yaml` states every knob once. Its `student_defaults` block is the training
config every student shares; each entry of `students` states only what differs from it. Other
profiles (`smoke`, `gpu`) state only what differs from the default, in the same shape. A
profile is merged, expanded and validated into the one complete `params.yaml` that `dvc repro`,
`dvc exp run -S` and every stage read:

    default.yaml  <-  overlay.yaml          (deep merge; a mapping merges, anything else replaces)
    student = student_defaults  <-  students.<name>

`depth-distill params --profile NAME` writes it; tests check that the committed `params.yaml`
is the default profile's merge.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from depth_core.atomic_io import atomic_write
from orchestration.params.schema import Params, ParamsError, apply_override, parse_params

PROFILES_DIR = "profiles"
DEFAULT_PROFILE = "default"
SHARED_STUDENT_KEY = "student_defaults"
HEADER = (
    "# Written by `depth-distill params --profile {name}` from profiles/: edit a profile and\n"
    "# run it again to change the lineage for good; edit here (or `dvc exp run -S key=value`)\n"
    "# for a one-off. Every knob is stated; nothing is filled in from code defaults.\n"
    "# Under a launcher (torchrun, srun) every batch_size is per rank: the global batch is\n"
    "# batch_size x world size, and each epoch's samples are split across the ranks.\n"
)


def profiles_dir(root: str | Path) -> Path:
    return Path(root) / PROFILES_DIR


def available_profiles(root: str | Path) -> list[str]:
    return sorted(p.stem for p in profiles_dir(root).glob("*.yaml"))


def deep_merge(base: Any, overlay: Any) -> Any:
    """`overlay` on top of `base`: mappings merge key by key, any other value replaces."""
    if not isinstance(base, dict) or not isinstance(overlay, dict):
        return copy.deepcopy(overlay)
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        merged[key] = deep_merge(merged[key], value) if key in merged else copy.deepcopy(value)
    return merged


def _read_yaml(path: Path) -> dict:
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: top level must be a mapping")
    return raw


def _profile_file(root: str | Path, name: str) -> Path:
    path = profiles_dir(root) / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(available_profiles(root)) or "none"
        raise ParamsError(f"profile {name!r}: {path} not found (known profiles: {known})")
    return path


def expand_students(raw: dict, source: str) -> dict:
    """Each student = the shared `student_defaults` block with the student's own keys on top."""
    raw = dict(raw)
    shared = raw.pop(SHARED_STUDENT_KEY, None) or {}
    students = raw.get("students") or {}
    if not isinstance(shared, dict) or not isinstance(students, dict):
        raise ParamsError(f"{source}: {SHARED_STUDENT_KEY} and students must be mappings")
    raw["students"] = {name: deep_merge(shared, own or {}) for name, own in students.items()}
    return raw


def profile_raw(root: str | Path, name: str = DEFAULT_PROFILE) -> tuple[dict, str]:
    """Profile `name` merged onto the default and its students expanded (not yet validated),
    with a description of its source files for error messages."""
    default_file = _profile_file(root, DEFAULT_PROFILE)
    raw = _read_yaml(default_file)
    source = str(default_file)
    if name != DEFAULT_PROFILE:
        overlay_file = _profile_file(root, name)
        raw = deep_merge(raw, _read_yaml(overlay_file))
        source = f"{default_file} + {overlay_file}"
    return expand_students(raw, source), source


def profile_params(
    root: str | Path, name: str = DEFAULT_PROFILE, overrides: list[str] | None = None
) -> Params:
    """The validated params of profile `name`, with `key.sub=value` overrides applied."""
    raw, source = profile_raw(root, name)
    for item in overrides or []:
        apply_override(raw, item)
    return parse_params(raw, source, root=root)


def render_params(raw: dict, name: str) -> str:
    """The params.yaml text: the merged values as written in the profiles (derived values such
    as `out_channels: null` stay derived), lists inline."""
    body = yaml.safe_dump(raw, sort_keys=False, default_flow_style=None, width=100)
    return HEADER.format(name=name) + body


def write_params(root: str | Path, name: str, output: str | Path | None = None) -> Path:
    """Merge, validate and atomically write profile `name` (default: `<root>/params.yaml`)."""
    raw, source = profile_raw(root, name)
    parse_params(raw, source, root=root)  # a profile that does not validate writes nothing
    path = Path(output) if output is not None else Path(root) / "params.yaml"
    atomic_write(path, render_params(raw, name))
    return path
