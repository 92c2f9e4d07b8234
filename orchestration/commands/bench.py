"""`depth-distill bench NAME`: run a benchmark script from benchmarks/ (ratios in one run)."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in BENCH_DIR.glob("bench_*.py"))


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench", help="run a benchmark", description="Benchmarks print ratios measured in one run."
    )
    parser.add_argument("name", help=f"one of: {', '.join(available())}, or 'all'")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the benchmark")
    parser.set_defaults(func=_run)


def _load(name: str):
    path = BENCH_DIR / f"bench_{name}.py"
    if not path.exists():
        raise SystemExit(f"unknown benchmark {name!r}; available: {', '.join(available())}")
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(args: argparse.Namespace) -> int:
    names = available() if args.name == "all" else [args.name]
    status = 0
    for name in names:
        print(f"== bench {name} ==", flush=True)
        status |= int(_load(name).main(args.rest) or 0)
    return status
