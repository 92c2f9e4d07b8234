"""The `depth-distill` command line: one entry point, one module per subcommand group.

Each module in `orchestration.commands` exposes `register(subparsers)`, which adds its
subcommand(s) and sets `func` on the parsed namespace; `main` dispatches to it.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import os
import sys

# Errors that describe bad input (a parameter, a file): shown as one clear line, no traceback.
# Set DEPTH_DISTILL_DEBUG=1 to see the traceback anyway.
USER_ERRORS = (ValueError, FileNotFoundError, KeyError, PermissionError)

# command name -> the module in orchestration.commands that registers it
COMMAND_MODULES = {
    "stage": "stage",
    "data": "data",
    "predict": "predict",
    "export": "export",
    "evaluate": "evaluate",
    "evaluate-pairs": "evaluate_pairs",
    "zeroshot": "zeroshot",
    "bench": "bench",
    "ablation": "ablation",
    "params": "params",
    "dagster-report": "dagster_report",
}


def _modules_for(argv: list[str] | None) -> list[str]:
    """Only the named command's module when there is one: each stage of `dvc repro` is its own
    process, and importing every command's dependencies costs seconds per process."""
    first = next((a for a in argv or [] if not a.startswith("-")), None)
    if first in COMMAND_MODULES:
        return [COMMAND_MODULES[first]]
    return list(COMMAND_MODULES.values())


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser for `argv` (only its command registered), or for every command."""
    parser = argparse.ArgumentParser(
        prog="depth-distill",
        description="Depth Anything-style teacher/student training pipeline.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _modules_for(argv):
        try:
            module = importlib.import_module(f"orchestration.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"orchestration.commands.{name}":
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except USER_ERRORS as exc:
        if os.environ.get("DEPTH_DISTILL_DEBUG"):
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"depth-distill {args.command}: error: {message}", file=sys.stderr)
        return 2
    return int(result or 0)


def run() -> None:
    """The console entry point: `main`, then exit without tearing the interpreter down.

    With torch, timm and MLflow loaded, Python's finalisation takes 1.3-1.7 s per process
    (measured), and `dvc repro` starts one process per stage. Output streams are flushed and
    atexit handlers (logging, MLflow) run first, so nothing is lost.
    """
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    atexit._run_exitfuncs()
    os._exit(code)


if __name__ == "__main__":
    run()
