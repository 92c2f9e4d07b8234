"""`depth-distill data ...`: look at datasets and import users' own folders."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from depth_core.data.importers import (
    DEFAULT_DEPTH_SUFFIXES,
    FOLDER_FORMAT,
    DatasetImportError,
    ImageImportConfig,
    ImportStats,
    RGBDImportConfig,
    import_image_folder,
    import_rgbd_folder,
)
from depth_core.data.layouts import LAYOUTS, format_names
from depth_core.data.preview import contact_sheet
from depth_core.data.tar_writer import TarWriteStats, write_image_tars, write_rgbd_tars

NPZ, WEBDATASET = "npz", "webdataset"
_OUTPUT_HELP = (
    "npz: decoded shards at --height x --width (default); webdataset: tars of the files' "
    "bytes as they are, any size, --shard-size per tar (for source: webdataset)"
)


def add_depth_convention_arguments(parser: argparse.ArgumentParser) -> None:
    """The depth-map conventions shared by `data import-rgbd` and `evaluate`."""
    parser.add_argument(
        "--depth-scale",
        type=float,
        default=1.0,
        help="raw depth is divided by this (16-bit PNG: NYU 1000, TUM 5000, KITTI 256)",
    )
    parser.add_argument(
        "--disparity", action="store_true", help="the maps hold disparity, not depth"
    )
    parser.add_argument("--min-depth", type=float, default=0.0, help="depth <= this is invalid")
    parser.add_argument("--max-depth", type=float, default=None, help="depth > this is invalid")
    parser.add_argument(
        "--depth-suffix",
        action="append",
        default=None,
        metavar="SUFFIX",
        help=f"depth file name ending, repeatable, first wins (default: {', '.join(DEFAULT_DEPTH_SUFFIXES[:3])}, ...)",
    )


def depth_convention_options(args: argparse.Namespace) -> dict:
    """RGBDImportConfig fields from the arguments of `add_depth_convention_arguments`."""
    options = {
        "depth_scale": args.depth_scale,
        "is_disparity": args.disparity,
        "min_depth": args.min_depth,
        "max_depth": args.max_depth,
    }
    if args.depth_suffix:
        options["depth_suffixes"] = args.depth_suffix
    return options


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser(
        "data", help="preview datasets, import your own images / RGB-D pairs"
    )
    commands = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")

    preview = commands.add_parser("preview", help="write a contact sheet PNG of a dataset")
    preview.add_argument("dataset", help="dataset directory (labeled, unlabeled or pseudo-labels)")
    preview.add_argument("--out", required=True, help="PNG file to write")
    preview.add_argument("-n", type=int, default=16, help="number of samples (default 16)")
    preview.add_argument("--columns", type=int, default=4, help="samples per row (default 4)")
    preview.add_argument(
        "--images", default=None, help="for pseudo-labels: the unlabeled set they label"
    )
    preview.set_defaults(func=run_preview)

    rgbd = commands.add_parser(
        "import-rgbd",
        help="import a folder of RGB images + depth maps",
        epilog=_formats_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rgbd.add_argument("src", help="folder of images and depth maps (searched recursively)")
    rgbd.add_argument("dst", help="dataset directory to create (replaced only on success)")
    rgbd.add_argument(
        "--format",
        choices=format_names(),
        default=FOLDER_FORMAT,
        help=f"how SRC is laid out (default {FOLDER_FORMAT}; the formats are listed below)",
    )
    _size_arguments(rgbd)
    add_depth_convention_arguments(rgbd)
    rgbd.add_argument("--image-dir", default="", help="sub-folder of SRC holding the images")
    rgbd.add_argument("--depth-dir", default="", help="sub-folder of SRC holding the depth maps")
    rgbd.add_argument(
        "--depth-resize",
        choices=["mean", "nearest"],
        default="mean",
        help="how depth is downscaled (mean of valid pixels, or nearest)",
    )
    rgbd.add_argument("--output-format", choices=[NPZ, WEBDATASET], default=NPZ, help=_OUTPUT_HELP)
    rgbd.set_defaults(func=run_import_rgbd)

    images = commands.add_parser("import-images", help="import a folder of unlabeled images")
    images.add_argument(
        "src", help="folder of images (jpg/png/webp/bmp/tiff, searched recursively)"
    )
    images.add_argument("dst", help="dataset directory to create (replaced only on success)")
    _size_arguments(images)
    images.add_argument("--format", choices=[NPZ, WEBDATASET], default=NPZ, help=_OUTPUT_HELP)
    images.set_defaults(func=run_import_images)


def _formats_epilog() -> str:
    """What each --format expects under SRC, and its depth convention."""
    lines = [
        "formats (--format):",
        f"  {FOLDER_FORMAT}: any folder; images pair with depth maps by file name, read with",
        "    --depth-scale, --disparity, --depth-suffix, --image-dir and --depth-dir",
    ]
    for name, layout in LAYOUTS.items():
        lines += [
            f"  {name}: {layout.image_file}",
            f"    with {layout.depth_file}",
            f"    depth: {layout.convention}",
        ]
    lines.append("A layout fixes its own files and depth convention; --min-depth, --max-depth,")
    lines.append("--height, --width and --depth-resize apply to every format.")
    return "\n".join(lines)


def _size_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--height", type=int, default=128, help="training height (default 128)")
    parser.add_argument("--width", type=int, default=128, help="training width (default 128)")
    parser.add_argument(
        "--shard-size", type=int, default=256, help="samples per shard (default 256)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run_preview(args: argparse.Namespace) -> int:
    path = contact_sheet(
        args.dataset, args.out, n=args.n, columns=args.columns, images_dir=args.images
    )
    print(f"wrote {path}")
    return 0


def run_import_rgbd(args: argparse.Namespace) -> int:
    options: dict[str, Any] = {
        "format": args.format,
        "height": args.height,
        "width": args.width,
        "shard_size": args.shard_size,
        "image_dir": args.image_dir,
        "depth_dir": args.depth_dir,
        "depth_resize": args.depth_resize,
        **depth_convention_options(args),
    }
    if args.output_format == WEBDATASET:
        config = RGBDImportConfig(**options)
        return _run_tars(
            lambda: write_rgbd_tars(
                args.src, args.dst, config, args.shard_size, progress=not args.quiet
            )
        )
    return _run(
        lambda: import_rgbd_folder(
            args.src, args.dst, RGBDImportConfig(**options), progress=not args.quiet
        )
    )


def run_import_images(args: argparse.Namespace) -> int:
    if args.format == WEBDATASET:
        return _run_tars(
            lambda: write_image_tars(args.src, args.dst, args.shard_size, progress=not args.quiet)
        )
    config = ImageImportConfig(height=args.height, width=args.width, shard_size=args.shard_size)
    return _run(lambda: import_image_folder(args.src, args.dst, config, progress=not args.quiet))


def _run(task) -> int:
    try:
        stats = task()
    except (DatasetImportError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_stats(stats))
    return 0


def _run_tars(task) -> int:
    try:
        stats = task()
    except (DatasetImportError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_tar_stats(stats))
    return 0


def format_tar_stats(stats: TarWriteStats, max_listed: int = 20) -> str:
    """What was written, the urls to set in params.yaml, and each skipped file."""
    per_sample = f"{stats.bytes_per_sample / 1e3:.1f} kB per sample, the files as they are"
    lines = [
        f"wrote {stats.n_samples} samples into {stats.n_tars} tars under {stats.out_dir} "
        + f"({per_sample})",
        f"urls: {stats.urls}",
        f"skipped {len(stats.skipped)} files",
    ]
    lines += [f"  {item['file']}: {item['reason']}" for item in stats.skipped[:max_listed]]
    return "\n".join(lines)


def format_stats(stats: ImportStats, max_listed: int = 20) -> str:
    """Human summary: counts, then each skipped file with its reason."""
    lines = [
        f"imported {stats.n_samples} samples into {stats.dataset_dir} ({stats.n_shards} shards)",
        f"skipped {stats.n_skipped} files"
        + (
            ": " + ", ".join(f"{code} {n}" for code, n in stats.skipped_by_code.items())
            if stats.n_skipped
            else ""
        ),
    ]
    for entry in stats.skipped[:max_listed]:
        lines.append(f"  {entry['file']}: {entry['reason']}")
    if stats.n_skipped > max_listed:
        lines.append(f"  ... and {stats.n_skipped - max_listed} more (see summary.json)")
    return "\n".join(lines)
