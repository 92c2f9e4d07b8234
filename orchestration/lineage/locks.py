"""One writer at a time: a stage holds an exclusive lock on its outputs for its whole run.

Every runner (`dvc repro` through `depth-distill stage`, the CLI, Dagster assets) takes the same
lock file, `<root>/.locks/<stage>.lock`, before it clears or writes a stage's outputs. The
second runner does not wait: it fails at once naming the stage and the holder (pid, runner,
start time), and has touched nothing. The lock is an `fcntl.flock` on an open file, so the
kernel drops it when the holder exits, even on `kill -9`: no stale lock survives a crash.
A forked child (a DataLoader worker) closes its copy of the lock file at once, so a worker
that outlives a killed stage does not keep the stage's outputs locked.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_DIR = ".locks"
_held: dict[str, int] = {}  # lock file -> depth of re-entry in this process
_handles: dict[str, object] = {}  # lock file -> the open file holding its flock


def _forget_locks_in_child() -> None:
    """In a forked child: close the inherited lock files (closing, unlike LOCK_UN, leaves the
    parent's lock held) and hold nothing, since the child does not own the parent's outputs."""
    for handle in _handles.values():
        handle.close()
    _handles.clear()
    _held.clear()


os.register_at_fork(after_in_child=_forget_locks_in_child)


class OutputsBusy(ValueError):
    """Another run is writing this stage's outputs; reported as one line, like bad input."""


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process"
    since = time.strftime("%H:%M:%S UTC", time.gmtime(info.get("since", 0)))
    return (
        f"pid {info.get('pid')} on {info.get('host')} (runner {info.get('runner')}, since {since})"
    )


@contextmanager
def output_lock(root: Path, name: str, runner: str) -> Iterator[None]:
    """Hold the exclusive lock of `name`'s outputs under `root`, or raise OutputsBusy.

    Re-entrant within one process (a Dagster asset locks around the stage and its `dvc commit`,
    the stage locks again inside)."""
    path = (Path(root) / LOCK_DIR / f"{name}.lock").resolve()
    key = str(path)
    if _held.get(key):
        _held[key] += 1
        try:
            yield
        finally:
            if key in _held:
                _held[key] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 - kept open for as long as the lock is held
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputsBusy(
                f"stage {name}: its outputs are being written by {_holder(path)}; "
                f"wait for that run to finish (lock {path})"
            ) from None
        handle.seek(0)
        handle.truncate()
        info = {"pid": os.getpid(), "host": socket.gethostname(), "runner": runner}
        handle.write(json.dumps({**info, "stage": name, "since": time.time()}))
        handle.flush()
        _held[key] = 1
        _handles[key] = handle
        try:
            yield
        finally:
            _held.pop(key, None)
            _handles.pop(key, None)
            if not handle.closed:  # closed: a forked child leaving the block of its parent
                handle.truncate(0)
    finally:
        handle.close()  # releases the flock
