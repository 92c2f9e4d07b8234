"""Where the teacher comes from, as files: trained here, or a checkpoint / Hugging Face folder.

An existing teacher is copied into the teacher's output directory (`models/teacher/`), so the
downstream stages, DVC (which hashes that directory as the teacher stage's output) and an
experiment's fallback lookup all find it in one place whatever the source:

    models/teacher/model.safetensors   source train or checkpoint (a depth-distill checkpoint)
    models/teacher/<released name>.pth source checkpoint (the authors' Depth Anything file, under
                                       its own name, which says its version and metric range)
    models/teacher/transformers/       source transformers (the folder's config, weights and
                                       preprocessor files)
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from depth_core.atomic_io import atomic_directory, atomic_path
from depth_core.models.checkpoint import CHECKPOINT_FILE
from depth_core.models.official_depth_anything import is_official_checkpoint
from orchestration.lineage.files import md5_file
from orchestration.lineage.paths import TRANSFORMERS_DIR
from orchestration.params.schema import TeacherParams, resolve_path

# What from_pretrained reads from a local folder; READMEs, other frameworks' weights and hidden
# download caches are left behind (and do not change the teacher's digest).
_FOLDER_PATTERNS = ("*.json", "*.safetensors")
_FALLBACK_WEIGHTS = ("pytorch_model*.bin",)


def existing_teacher_path(teacher: TeacherParams, root: Path, out_dir: Path) -> Path:
    """The given checkpoint/folder, re-checked before the stage deletes or writes anything: it
    may have moved since params were read, and it must not live in the output directory that
    the stage clears (e.g. a previously trained models/teacher/model.safetensors)."""
    from depth_core.model_loading import check_model_path
    from depth_core.models import CheckpointError

    if teacher.path is None:
        raise ValueError(f"teacher.path is required when teacher.source is {teacher.source!r}")
    path = resolve_path(teacher.path, root)
    try:
        path = check_model_path(path, teacher.source).resolve()
    except CheckpointError as error:
        raise ValueError(f"teacher.path {teacher.path!r}: {error}") from None
    out_dir = Path(out_dir).resolve()
    if path == out_dir or out_dir in path.parents:
        raise ValueError(
            f"teacher.path {teacher.path!r} lies inside the teacher's output directory {out_dir}, "
            "which this stage rewrites: copy it elsewhere first"
        )
    return path


def folder_files(folder: Path) -> list[Path]:
    """The files of a Hugging Face folder that make up the model, relative, sorted."""
    found = {p for pattern in _FOLDER_PATTERNS for p in folder.rglob(pattern)}
    if not any(p.suffix == ".safetensors" for p in found):
        found |= {p for pattern in _FALLBACK_WEIGHTS for p in folder.rglob(pattern)}
    relative = [p.relative_to(folder) for p in found if p.is_file()]
    return sorted(r for r in relative if not any(part.startswith(".") for part in r.parts))


def teacher_digest(path: Path) -> str:
    """md5 of a checkpoint file, or of a folder's (name, md5) list: changes with the weights."""
    if path.is_file():
        return md5_file(path)
    lines = "".join(f"{rel.as_posix()}:{md5_file(path / rel)}\n" for rel in folder_files(path))
    return hashlib.md5(lines.encode()).hexdigest()


def fingerprint(source: Path, kind: str) -> dict[str, str]:
    """What the installed teacher is made from: its files' digest, and for the authors' .pth
    its name too (the name says the version and metric range, so a rename is another model)."""
    made_from = {"source": kind, "digest": teacher_digest(source)}
    if kind == "checkpoint" and is_official_checkpoint(source):
        made_from["name"] = source.name
    return made_from


def install(source: Path, kind: str, out_dir: Path) -> Path:
    """Copy the teacher into `out_dir` (atomically; kept when already there) and return the copy."""
    if kind == "checkpoint":
        target = out_dir / (source.name if is_official_checkpoint(source) else CHECKPOINT_FILE)
        if not target.exists():
            with atomic_path(target) as temp:
                shutil.copyfile(source, temp)
        return target
    target = out_dir / TRANSFORMERS_DIR
    if not target.exists():
        with atomic_directory(target) as temp:
            for rel in folder_files(source):
                (temp / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source / rel, temp / rel)
    return target


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def teacher_model_path(teacher_dir: Path) -> Path:
    """The teacher's model inside its output directory: the checkpoint, else the HF folder.

    Only one of them (or the authors' .pth) exists (a change of source clears the directory);
    when none does, the checkpoint's path is returned so the caller's "does not exist" names the
    usual file.
    """
    checkpoint = teacher_dir / CHECKPOINT_FILE
    folder = teacher_dir / TRANSFORMERS_DIR
    if checkpoint.exists():
        return checkpoint
    if (folder / "config.json").is_file():
        return folder
    official = sorted(teacher_dir.glob("[!.]*")) if teacher_dir.is_dir() else []
    return next((p for p in official if p.is_file() and is_official_checkpoint(p)), checkpoint)
