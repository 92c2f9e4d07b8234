#!/usr/bin/env bash
# `dvc` for this repository: runs DVC from its own environment (.venv/dvc-env) with the project's
# .venv/bin first on PATH, so stage commands (depth-distill) resolve to the project's environment.
# --wait-for-lock: a `dvc repro` started while a Dagster asset runs `dvc commit` (or another
# repro hashes its stage) waits for DVC's repository lock instead of failing after 3 seconds.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PATH="$here:$PATH"
exec "$here/../dvc-env/bin/dvc" --wait-for-lock "$@"
