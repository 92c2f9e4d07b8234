"""What a stage's output depends on besides its params: the code it runs and its inputs' bytes.

The code a stage runs is the list of code paths `dvc.yaml` names as that stage's deps (one
definition, read from the file DVC reads), digested file by file. An upstream output is
summarised by its fingerprint plus a digest of its content: a model's weights, or a dataset's
manifest and shard sizes (the manifest holds every sample's id and statistics, so a dataset
with other content has another manifest, without reading gigabytes of shards).
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path

from orchestration.lineage import dvc_file
from orchestration.lineage.files import md5_file
from orchestration.lineage.paths import TRANSFORMERS_DIR

# The checkout whose code this process runs: its dvc.yaml says which code each stage runs.
CODE_ROOT = dvc_file.CODE_ROOT
DVC_FILE = dvc_file.DVC_FILE
CODE_PACKAGES = ("depth_core", "orchestration", "benchmarks")
FINGERPRINT_FILE = ".fingerprint.json"
TAR_INDEX = "webdataset.json"  # depth_core.data.tar_shards.index.INDEX_NAME, named without
# importing it, so a tar-reading module is no code dep of every stage


def stage_code_deps(stage: str) -> list[str]:
    """The code paths dvc.yaml lists as deps of `stage` (a `foreach` stage's template too)."""
    deps = dvc_file.stage_deps(stage, dvc_file=DVC_FILE)
    return [d for d in deps if Path(d).parts[0] in CODE_PACKAGES]


def _code_files(relative: str) -> list[Path]:
    path = CODE_ROOT / relative
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{DVC_FILE}: dep {relative} does not exist")
    return sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


@cache
def code_digest(stage: str) -> str:
    """sha256 of (path, md5) of every file of the stage's code deps: changes with any edit."""
    lines = []
    for relative in stage_code_deps(stage):
        for file in _code_files(relative):
            lines.append(f"{file.relative_to(CODE_ROOT).as_posix()}:{md5_file(file)}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def fingerprint_of(path: Path) -> dict | None:
    file = Path(path) / FINGERPRINT_FILE
    return json.loads(file.read_text()) if file.exists() else None


def _content_files(path: Path) -> list[tuple[str, Path, bool]]:
    """(name, file, hash its bytes?) for what identifies an output's content."""
    # a model's weights: its checkpoint (checkpoints/ holds the resumable training state)
    found = [(p.name, p, True) for p in sorted(path.glob("*.safetensors")) if p.is_file()]
    for folder in (TRANSFORMERS_DIR,):
        if (path / folder).is_dir():
            files = sorted(p for p in (path / folder).rglob("*") if p.is_file())
            found += [(p.relative_to(path).as_posix(), p, True) for p in files]
    if (path / "manifest.parquet").is_file():
        found.append(("manifest.parquet", path / "manifest.parquet", True))
        shards = sorted((path / "shards").glob("shard-*.npz"))
        found += [(p.relative_to(path).as_posix(), p, False) for p in shards]
    if (path / TAR_INDEX).is_file():  # a tar-backed dataset: its index names the tars' members
        found.append((TAR_INDEX, path / TAR_INDEX, True))
    return found


def content_digest(path: Path) -> str | None:
    """md5 over an output's weights, or its dataset manifest and shard sizes; None if empty."""
    files = _content_files(Path(path))
    if not files:
        return None
    lines = [
        f"{name}:{md5_file(file) if hash_bytes else file.stat().st_size}\n"
        for name, file, hash_bytes in files
    ]
    return hashlib.md5("".join(lines).encode()).hexdigest()


def upstream_entry(path: Path) -> dict:
    """How a downstream stage sees one of its inputs: how it was made and what it holds."""
    return {"fingerprint": fingerprint_of(path), "content": content_digest(path)}
