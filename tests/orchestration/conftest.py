"""Fixtures for end-to-end runs: a throwaway git + DVC copy of the repository at smoke size."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import write_smoke_params

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def project_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return [line for line in out.stdout.splitlines() if (REPO / line).is_file()]


def tool_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["DEPTH_DISTILL_ROOT"] = str(root)
    env["DAGSTER_HOME"] = str(root / ".dagster")
    env.pop("MLFLOW_TRACKING_URI", None)
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "depth-distill tests"
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "tests@depth-distill.invalid"
    return env


def run(cmd: list[str], root: Path, timeout: float = 600, check: bool = True):
    proc = subprocess.run(
        cmd,
        cwd=root,
        env=tool_env(root),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def make_project_copy(dest: Path) -> Path:
    """Copy the project, make the smoke profile its params.yaml, and commit it to a fresh git repo."""
    for rel in project_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, target)
    write_smoke_params(dest / "params.yaml")
    (dest / ".dagster").mkdir(exist_ok=True)
    run(["git", "init", "-q", "-b", "main"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-q", "-m", "smoke copy"], dest)
    return dest


@pytest.fixture()
def project_copy(tmp_path: Path) -> Path:
    return make_project_copy(tmp_path / "project")
