"""`depth-distill params --profile NAME`: write the complete params.yaml of a profile."""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestration.params.profiles import DEFAULT_PROFILE


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "params",
        help="write params.yaml from a profile (default, smoke, gpu)",
        description="Merge profiles/default.yaml with the named profile's overlay, expand the "
        "students from student_defaults, validate, and write the complete params.yaml that "
        "dvc repro reads. With --check, only report whether the file is that merge.",
    )
    parser.add_argument("--profile", default=DEFAULT_PROFILE, help="a file in profiles/")
    parser.add_argument("--root", default=".", type=Path, help="repository root")
    parser.add_argument("--output", type=Path, help="where to write (default: <root>/params.yaml)")
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if the output file differs from the profile's merge; write nothing",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from orchestration.params.profiles import profile_params, write_params
    from orchestration.params.schema import load_params

    output = args.output or args.root / "params.yaml"
    if args.check:
        expected = profile_params(args.root, args.profile)
        same = output.is_file() and load_params(output) == expected
        print(f"{output}: {'is' if same else 'is NOT'} the merge of profile {args.profile!r}")
        return 0 if same else 1
    path = write_params(args.root, args.profile, output)
    print(f"wrote {path} (profile {args.profile!r})")
    return 0
