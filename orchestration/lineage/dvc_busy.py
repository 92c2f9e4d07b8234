"""Whether a DVC process is using a stage's paths, read from DVC's own lock on them.

`dvc repro` holds its lock on a stage's outputs (write) and deps (read) in `.dvc/tmp/rwlock`
from before the stage's command starts until DVC has hashed and cached what it made: longer
than the command, which holds the stage's output lock only while it runs. A runner outside DVC
(a Dagster asset, `depth-distill stage` by hand) checks it after taking the output lock, so it
never clears outputs DVC is still hashing, or outputs a `dvc repro` reads as another stage's
deps. The DVC process that runs this one (an ancestor) is no other user.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from depth_core.atomic_io import process_running

RWLOCK = Path(".dvc") / "tmp" / "rwlock"


def _ancestors() -> set[int]:
    """This process and every process above it (Linux /proc; only the parent elsewhere)."""
    found, pid = {os.getpid()}, os.getppid()
    while pid > 1 and pid not in found:
        found.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return found


def dvc_users(root: Path, paths: list[str]) -> list[str]:
    """'<dvc command> (pid N) writes|reads <path>' for each live DVC process, other than this
    process's own, holding DVC's lock on one of `paths` (relative to `root`)."""
    try:
        lock = json.loads((Path(root) / RWLOCK).read_text() or "{}")
    except (OSError, ValueError):
        return []  # no DVC process holds anything (or DVC is rewriting it: it checks itself)
    own = _ancestors()
    wanted = {os.path.realpath(Path(root) / p): p for p in paths}
    holders = [("writes", path, info) for path, info in (lock.get("write") or {}).items()]
    holders += [
        ("reads", path, info) for path, infos in (lock.get("read") or {}).items() for info in infos
    ]
    users = []
    for verb, path, info in holders:
        name = wanted.get(os.path.realpath(path))
        pid = info.get("pid") if isinstance(info, dict) else None
        if name is None or not isinstance(pid, int) or pid in own or not process_running(pid):
            continue
        users.append(f"{info.get('cmd', 'dvc')} (pid {pid}) {verb} {name}")
    return users
