"""Keep DVC's view in step with stages that Dagster ran in-process.

After a Dagster asset runs a stage on the default lineage, `dvc commit` records the outputs
in dvc.lock and the cache, exactly as `dvc repro` would have, so `dvc status` stays clean and
the checkpoint's DVC md5 can be shown in the asset's metadata.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


class DvcError(RuntimeError):
    pass


def dvc_executable() -> str | None:
    """The project's `dvc` (a wrapper next to this interpreter), else the one on PATH."""
    beside = Path(sys.executable).parent / "dvc"
    if beside.exists():
        return str(beside)
    return shutil.which("dvc")


def is_dvc_repo(root: Path) -> bool:
    return (root / ".dvc").is_dir() and (root / "dvc.yaml").exists()


def commit_stage(root: Path, stage: str, timeout: float = 1800) -> None:
    """`dvc commit --force STAGE`: dvc.lock records what the stage just made. It waits for DVC's
    repository lock (another `dvc repro` hashing its own stage holds it for seconds to minutes)
    rather than failing after DVC's default three seconds."""
    exe = dvc_executable()
    if exe is None:
        raise DvcError("dvc is not installed: run `make setup`")
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(
        [exe, "--wait-for-lock", "commit", "--force", stage],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        reason = proc.stderr.strip() or proc.stdout.strip() or "no output"
        raise DvcError(f"dvc commit {stage} failed (exit status {proc.returncode}): {reason}")
