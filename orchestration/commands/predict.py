"""`depth-distill predict`: disparity maps for a file or a folder of images of any size.

For each image, `<stem>.npy` holds float32 disparity at the image's original resolution
(larger = nearer) and `<stem>.png` a colourised picture of it, each written whole or not at all; sub-folders of the input are
mirrored in the output so equal file names never collide. Unreadable files are skipped and
listed at the end; the command fails only when no image could be predicted. `--checkpoint` is a
depth-distill .safetensors file, a local Hugging Face depth-estimation folder, or a
depth-distill ONNX export (`depth-distill export`), which runs through onnxruntime on the CPU in
fp32 with the same resizing, outputs and files.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from depth_core.atomic_io import atomic_path
from depth_core.data.image_io import IMAGE_EXTENSIONS, ImageReadError, read_image
from depth_core.inference import load_for_inference
from depth_core.models import CheckpointError
from depth_core.viz import colorize_disparity
from orchestration.commands.inference_args import add_inference_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="predict disparity for an image or a folder of images",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="model .safetensors checkpoint, a local Hugging Face depth-estimation folder, "
        "or a depth-distill .onnx export (onnxruntime, CPU)",
    )
    parser.add_argument(
        "--input", required=True, help="an image file or a folder (searched recursively)"
    )
    parser.add_argument("--output", required=True, help="folder for <stem>.npy and <stem>.png")
    add_inference_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def find_images(source: Path) -> list[Path]:
    """The file itself, or every visible image file under the folder, sorted."""
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise FileNotFoundError(f"--input {source} does not exist")
    extensions = {e.lower() for e in IMAGE_EXTENSIONS}
    found = []
    for root, dirs, files in os.walk(source):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [
            Path(root) / f
            for f in files
            if not f.startswith(".") and Path(f).suffix.lower() in extensions
        ]
    return sorted(found)


def output_stem(path: Path, source: Path, output: Path) -> Path:
    """output/<relative folder>/<stem>: the input's layout, so a/x.png and b/x.png both survive."""
    relative = path.relative_to(source).parent if source.is_dir() else Path()
    return output / relative / path.stem


def write_prediction(stem: Path, disparity: np.ndarray) -> None:
    """`<stem>.npy` and `<stem>.png`, each complete or absent: a run killed mid-way leaves no
    half-written map that looks finished."""
    with atomic_path(stem.with_suffix(".npy")) as temp, open(temp, "wb") as handle:
        np.save(handle, disparity.astype(np.float32, copy=False))
    with atomic_path(stem.with_suffix(".png")) as temp:
        Image.fromarray(colorize_disparity(disparity)).save(temp, format="PNG")


def run(args: argparse.Namespace) -> int:
    source, output = Path(args.input), Path(args.output)
    try:
        paths = find_images(source)
        model = load_for_inference(args.checkpoint, args.device, args.amp)
    except (FileNotFoundError, CheckpointError, RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not paths:
        print(f"error: no images found in {source}", file=sys.stderr)
        return 1
    if args.batch_size < 1:
        print("error: --batch-size must be >= 1", file=sys.stderr)
        return 1

    readable: deque[Path] = deque()
    skipped: list[tuple[Path, str]] = []
    bar = tqdm(total=len(paths), unit="img", desc="predict", disable=args.quiet)

    def images() -> Iterator[np.ndarray]:
        for path in paths:
            try:
                image = read_image(path)
            except ImageReadError as exc:
                skipped.append((path, str(exc)))
                bar.update(1)
                continue
            readable.append(path)
            yield image

    written = 0
    for disparity in model.iterate(
        images(), batch_size=args.batch_size, flip_tta=args.flip_tta, scales=args.scales
    ):
        path = readable.popleft()
        stem = output_stem(path, source, output)
        write_prediction(stem, disparity)
        written += 1
        bar.update(1)
    bar.close()

    print(f"wrote {written} disparity maps (.npy + .png) to {output}")
    if skipped:
        print(f"skipped {len(skipped)} unreadable file(s):")
        for path, reason in skipped:
            print(f"  {path}: {reason}")
    return 0 if written else 1
