"""Atomic file writes: readers (and DVC) never see a half-written output.

Every file the project publishes is written through `atomic_path`: the content goes to a
uniquely named hidden sibling (`.<name>.<pid>.<random>.tmp`), which is fsynced, renamed over
the destination, and the directory fsynced, so a crash leaves the old file or the new one,
never a truncated one, and two writers of the same file never share a temporary file.

JSON follows one policy: NaN and infinities become `null`, so every JSON file the project
writes is strict JSON that DVC, MLflow and browsers can read.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import Any

TEMP_SUFFIX = ".tmp"


def temp_prefix(path: str | Path) -> str:
    """How the temporary siblings of `path` start: finds leftovers of an interrupted write."""
    return f".{Path(path).name}."


def _reserve_temp(path: Path, make: Callable[[Path], object]) -> Path:
    """Create a fresh, uniquely named sibling of `path` with `make(name)`; returns its path.

    `make` fails if the name exists, so concurrent writers can never pick the same one.
    """
    for _ in range(100):
        temp = path.with_name(
            f"{temp_prefix(path)}{os.getpid()}.{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}"
        )
        try:
            make(temp)
        except FileExistsError:
            continue
        return temp
    raise FileExistsError(f"no free temporary name next to {path}")


def _create_file(path: Path) -> None:
    """Exclusive create with the mode a plain `open` would give (0o666 minus the umask)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: str | Path) -> None:
    """Persist a rename inside `directory`; best effort (not every platform opens folders)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write `path`'s new content to; publish it only on success.

    On leaving the block without error the temporary file is fsynced, renamed over `path` and
    the directory fsynced. On any error (also in the rename) the temporary file is removed,
    `path` keeps its previous content, and the error propagates.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = _reserve_temp(path, _create_file)
    try:
        yield temp
        _fsync_file(temp)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Like `atomic_path` for a folder that must not exist yet: fill the yielded folder.

    On success the folder is renamed to `path` in one step; on error it is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = _reserve_temp(path, lambda name: os.mkdir(name, 0o777))
    try:
        yield temp
        fsync_dir(temp)
        os.replace(temp, path)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    fsync_dir(path.parent)


@contextmanager
def replaced_directory(path: str | Path) -> Iterator[Path]:
    """Like `atomic_directory` for a folder that may exist already: fill the yielded folder.

    On success it takes the old folder's place (which is then removed), so no file of the old
    one survives beside the new ones; on error the old folder stays exactly as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = _reserve_temp(path, lambda name: os.mkdir(name, 0o777))
    try:
        yield new
        fsync_dir(new)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    if path.exists():
        old = _reserve_temp(path, lambda name: os.mkdir(name, 0o777))
        os.replace(path, old)  # onto the empty folder just reserved
        os.replace(new, path)
        shutil.rmtree(old)
    else:
        os.replace(new, path)
    fsync_dir(path.parent)


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write `data` (text is UTF-8) to `path` atomically; returns `path`."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    path = Path(path)
    with atomic_path(path) as temp:
        temp.write_bytes(payload)
    return path


def json_safe(value: Any) -> Any:
    """`value` as plain JSON types, with NaN and infinities as None (null in the file).

    Numpy and torch scalars and arrays become numbers and lists, paths strings, pydantic
    models their JSON dump; anything else is left for `json.dumps` to accept or refuse.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, PurePath):
        return str(value)
    if hasattr(value, "model_dump"):
        return json_safe(value.model_dump(mode="json"))
    if hasattr(value, "tolist"):
        return json_safe(value.tolist())
    return value


def json_text(data: Any, indent: int | None = 2, sort_keys: bool = False) -> str:
    """Strict JSON text of `data` under the project's policy (non-finite numbers are null)."""
    return json.dumps(json_safe(data), indent=indent, sort_keys=sort_keys, allow_nan=False)


def write_json(
    path: str | Path, data: Any, indent: int | None = 2, sort_keys: bool = False
) -> Path:
    """Write `data` as strict JSON (non-finite numbers become null) to `path` atomically."""
    try:
        text = json_text(data, indent=indent, sort_keys=sort_keys)
    except TypeError as error:
        raise TypeError(f"cannot write {path} as JSON: {error}") from error
    return atomic_write(path, text + "\n")
