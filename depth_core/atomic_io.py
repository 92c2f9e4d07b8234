"""Atomic file writes: readers (and DVC) never see a half-written output.

Every file the project publishes is written through `atomic_path`: the content goes to a
uniquely named hidden sibling (`.<name>.<pid>-<host>.<random>.tmp`), which is fsynced,
renamed over the destination, and the directory fsynced, so a crash leaves the old file or
the new one, never a truncated one, and two writers of the same file never share a temporary
file. The pid and machine in the name let the next writer of a path remove what a killed one
left behind (only temporaries whose process is gone, never a live writer's).

A write that fails because the disk is full (or a quota or file size limit is reached) raises
`DiskFull`, one line naming the file; the old content stays and no temporary file remains.

JSON follows one policy: NaN and infinities become `null`, so every JSON file the project
writes is strict JSON that DVC, MLflow and browsers can read.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import shutil
import socket
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import Any

TEMP_SUFFIX = ".tmp"
# Which machine (or container: pids are only comparable within one) wrote a temporary file.
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
_OWNER = re.compile(r"\.(\d+)-([0-9a-f]{6})\.[0-9a-f]{8}\.tmp$")  # .<pid>-<host>.<rand>.tmp
# errno values, and the words libraries that hide them (safetensors) use, for "no room".
_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
_FULL_WORDS = (
    "no space left",
    "database or disk is full",
    "file too large",
    "quota exceeded",
    "os error 28",
    "os error 27",
)


class DiskFull(OSError, ValueError):
    """No room to write a file (ENOSPC, EFBIG, EDQUOT); reported as one line, like bad input."""

    def __str__(self) -> str:
        return str(self.strerror)


def temp_prefix(path: str | Path) -> str:
    """How the temporary siblings of `path` start: finds leftovers of an interrupted write."""
    return f".{Path(path).name}."


def process_running(pid: int) -> bool:
    """Whether process `pid` exists on this machine (one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


# folder -> its mtime after this process last published into it: an unchanged folder has
# gained no temporaries since, so it needs no new sweep
_swept: dict[str, int] = {}


def _folder_mtime(folder: str) -> int | None:
    try:
        return os.stat(folder).st_mtime_ns
    except OSError:
        return None


def _published_into(folder: Path) -> None:
    """Remember the folder's state after this process's write (see `remove_dead_temps`)."""
    key = os.path.realpath(folder)
    _swept[key] = _folder_mtime(key)


def remove_dead_temps(path: str | Path) -> int:
    """Remove the temporaries in `path`'s folder whose writer (on this machine) no longer runs.

    A writer killed mid-write (kill -9, OOM) cannot clean up; the pid in a temporary's name
    tells the next writer into the folder that it is gone. Temporaries of live processes and
    of other machines are kept. A folder unchanged since this process last published into it is
    not listed again, so writing many files into one folder one after another stays linear.
    Returns how many were removed.
    """
    folder = os.path.realpath(Path(path).parent)
    if folder in _swept and _swept[folder] == _folder_mtime(folder):
        return 0
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        owner = _OWNER.search(entry.name) if entry.name.startswith(".") else None
        if owner is None or owner.group(2) != _HOST or process_running(int(owner.group(1))):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            Path(entry.path).unlink(missing_ok=True)
        removed += 1
    return removed


def says_disk_full(text: str) -> bool:
    """Whether an error message says the disk is full (for libraries that drop the errno)."""
    return any(word in text.lower() for word in _FULL_WORDS)


def _disk_full(error: BaseException, target: str | Path) -> DiskFull | None:
    """`error` as a DiskFull naming `target` when it, or an error it arose from, means the
    disk is full; None otherwise (and `error` itself when it already is a DiskFull).

    Libraries often bury the errno: safetensors and sqlite only say it in words, torch's
    writer keeps the OSError as the context of its own RuntimeError.
    """
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, DiskFull):
            return error
        seen.add(id(error))
        said = [line for line in str(error).splitlines() if says_disk_full(line)]
        if isinstance(error, OSError) and error.errno in _FULL_ERRNOS:
            code, reason = error.errno, os.strerror(error.errno)
        elif said:
            reason = said[0].strip()[:200]
            too_large = "too large" in reason.lower() or "error 27" in reason
            code = errno.EFBIG if too_large else errno.ENOSPC
        else:
            error = error.__cause__ or error.__context__
            continue
        return DiskFull(
            code, f"no space left to write {target} ({reason}); free some space and run again"
        )
    return None


def raise_if_disk_full(error: BaseException, target: str | Path) -> None:
    """Re-raise a full-disk failure of writing `target` as DiskFull naming it; return for any
    other error (and for a DiskFull already), so the caller re-raises it as it was."""
    full = _disk_full(error, target)
    if full is not None and full is not error:
        raise full from error


def _reserve_temp(path: Path, make: Callable[[Path], object]) -> Path:
    """Create a fresh, uniquely named sibling of `path` with `make(name)`; returns its path.

    `make` fails if the name exists, so concurrent writers can never pick the same one.
    """
    for _ in range(100):
        temp = path.with_name(
            f"{temp_prefix(path)}{os.getpid()}-{_HOST}.{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}"
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
    `path` keeps its previous content, and the error propagates (as DiskFull when the disk
    is full). Temporaries a killed writer of `path` left are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temps(path)
    temp = _reserve_temp(path, _create_file)
    try:
        yield temp
        _fsync_file(temp)
        os.replace(temp, path)
    except BaseException as error:
        temp.unlink(missing_ok=True)
        raise_if_disk_full(error, path)
        raise
    fsync_dir(path.parent)
    _published_into(path.parent)


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Like `atomic_path` for a folder that must not exist yet: fill the yielded folder.

    On success the folder is renamed to `path` in one step; on error it is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temps(path)
    temp = _reserve_temp(path, lambda name: os.mkdir(name, 0o777))
    try:
        yield temp
        fsync_dir(temp)
        os.replace(temp, path)
    except BaseException as error:
        shutil.rmtree(temp, ignore_errors=True)
        raise_if_disk_full(error, path)
        raise
    fsync_dir(path.parent)
    _published_into(path.parent)


@contextmanager
def replaced_directory(path: str | Path) -> Iterator[Path]:
    """Like `atomic_directory` for a folder that may exist already: fill the yielded folder.

    On success it takes the old folder's place (which is then removed), so no file of the old
    one survives beside the new ones; on error the old folder stays exactly as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temps(path)
    new = _reserve_temp(path, lambda name: os.mkdir(name, 0o777))
    try:
        yield new
        fsync_dir(new)
    except BaseException as error:
        shutil.rmtree(new, ignore_errors=True)
        raise_if_disk_full(error, path)
        raise
    if path.exists():
        old = _reserve_temp(path, lambda name: os.mkdir(name, 0o777))
        os.replace(path, old)  # onto the empty folder just reserved
        os.replace(new, path)
        shutil.rmtree(old)
    else:
        os.replace(new, path)
    fsync_dir(path.parent)
    _published_into(path.parent)


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
