#!/usr/bin/env bash
# `dvc` for this repository: runs DVC from its own environment (.venv/dvc-env) with the project's
# .venv/bin first on PATH, so stage commands (depth-distill) resolve to the project's environment.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PATH="$here:$PATH"
exec "$here/../dvc-env/bin/dvc" "$@"
