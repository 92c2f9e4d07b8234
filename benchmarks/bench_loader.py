"""Would the GPU wait for data? Decoded + augmented images/s of one DataLoader worker, read
from `.npz` shards and from WebDataset tars of the same photos, beside the training step's
images/s of the default student, all measured in one run.

The photos are generated JPEGs (smooth gradients, a disc, mild noise: they compress like
photographs) at `--photo-size`; the npz set stores them decoded at the working size, the tars
store the JPEG bytes as they are and decode + fit them in the worker
(depth_core.data.tar_shards.decode). One worker's rate is the dataset iterated in this process
(what each DataLoader worker does); the training step is bench_train's StepRunner on synthetic
batches of the working size. "workers needed" = training images/s / one worker's images/s.

    python benchmarks/bench_loader.py [--params params.yaml] [--images 64] [--photo-size 768x1024]
        [--size 96x128] [--student NAME] [--steps 3] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from depth_core.atomic_io import write_json
from depth_core.data.augment import build_augment
from depth_core.data.dataset import ShardDataset
from depth_core.data.importers import ImageImportConfig, import_image_folder
from depth_core.data.shards import list_shards
from depth_core.data.tar_indexer import scan_tars, write_tar_dataset
from depth_core.data.tar_shards.index import DecodeSpec
from depth_core.data.tar_writer import write_image_tars
from depth_core.device import device_name, pick_device
from depth_core.training.precision import resolve_precision

DEPTH_ANYTHING_SIZE = 518


def _bench_train():
    """benchmarks/bench_train.py as a module (benchmarks/ is a folder of scripts)."""
    path = Path(__file__).with_name("bench_train.py")
    spec = importlib.util.spec_from_file_location("bench_train", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _size(text: str) -> tuple[int, int]:
    height, width = (int(v) for v in text.lower().split("x"))
    return height, width


def write_photos(folder: Path, count: int, size: tuple[int, int], quality: int = 90) -> None:
    height, width = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    for i in range(count):
        rng = np.random.default_rng(i)
        ramps = np.stack([x / width, y / height, (x + y) / (width + height)], -1)
        image = rng.uniform(0, 200, 3) + 55 * ramps
        cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
        image[(y - cy) ** 2 + (x - cx) ** 2 < (height / 4) ** 2] *= 0.6
        image += rng.normal(0, 4, image.shape)
        buffer = io.BytesIO()
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
        (folder / f"photo_{i:05d}.jpg").write_bytes(buffer.getvalue())


def loader_rate(dataset: ShardDataset, repeats: int) -> float:
    """Best images/s of one full pass (decode, fit, augment), as one DataLoader worker."""
    best = float("inf")
    for epoch in range(repeats):
        dataset.set_epoch(epoch)
        start = time.perf_counter()
        count = sum(1 for _ in dataset)
        best = min(best, time.perf_counter() - start)
    return count / best


def _student(params_path: Path, name: str | None):
    configs = _bench_train().configurations(params_path)
    students = {k: cfg for k, (cfg, is_student) in configs.items() if is_student}
    key = f"student_{name}" if name else next(iter(students))
    if key not in students:
        raise SystemExit(f"no student {name!r}; known: {', '.join(students)}")
    return key, students[key]


def _default_size(params_path: Path) -> tuple[int, int]:
    if params_path.exists():
        from orchestration.params.schema import load_params

        return tuple(load_params(params_path).data.unlabeled.working_size)
    return (96, 128)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--photo-size", type=_size, default=(768, 1024), help="HxW of the JPEGs")
    parser.add_argument("--size", type=_size, default=None, help="working HxW (default: params)")
    parser.add_argument("--shard-size", type=int, default=16)
    parser.add_argument("--student", default=None, help="default: the first student")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    size = args.size or _default_size(args.params)
    name, config = _student(args.params, args.student)
    device = pick_device(args.device)
    print(
        f"torch {torch.__version__} on {device_name(device)}, {torch.get_num_threads()} threads, "
        f"load average {os.getloadavg()[0]:.1f}; {args.images} JPEGs of "
        f"{args.photo_size[0]}x{args.photo_size[1]}, working size {size[0]}x{size[1]}",
        flush=True,
    )
    results: dict = {"working_size": list(size), "photo_size": list(args.photo_size)}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "photos").mkdir()
        write_photos(root / "photos", args.images, args.photo_size)
        tars = write_image_tars(root / "photos", root / "tars", args.shard_size, progress=False)
        spec = DecodeSpec(*size)
        scan = scan_tars(tars.urls, "unlabeled", spec, progress=False)
        write_tar_dataset(root / "tar_set", scan)
        bytes_per_image = {"tar (JPEG as is)": tars.bytes_per_sample}
        for label, (h, w) in (
            (f"npz {size[0]}x{size[1]}", size),
            (f"npz {DEPTH_ANYTHING_SIZE}x{DEPTH_ANYTHING_SIZE}", (DEPTH_ANYTHING_SIZE,) * 2),
        ):
            folder = root / f"npz_{h}x{w}"
            import_image_folder(
                root / "photos",
                folder,
                ImageImportConfig(height=h, width=w, shard_size=16),
                progress=False,
            )
            total = sum(p.stat().st_size for p in list_shards(folder))
            bytes_per_image[label] = total / args.images
        results["bytes_per_image"] = bytes_per_image
        augment = build_augment(config.augment, seed=config.seed)
        rates = {}
        for label, folder in (
            ("npz", root / f"npz_{size[0]}x{size[1]}"),
            ("tar", root / "tar_set"),
        ):
            data = ShardDataset(folder, seed=0, require_depth=False, transform=augment)
            rates[label] = loader_rate(data, args.repeats)
    precision = resolve_precision(config.precision, device)
    layout = "channels_last" if config.channels_last else "contiguous"
    rows = _bench_train().measure(
        config, True, args.batch_size, args.steps, size, device, precisions=(precision,)
    )
    train = rows[f"{precision}/{layout}"]["images_per_second"]
    results.update({"loader_images_per_second_per_worker": rates, "train_images_per_second": train})

    print(
        "bytes per image: " + ", ".join(f"{k} {v / 1e3:.1f} kB" for k, v in bytes_per_image.items())
    )
    tar_bytes = bytes_per_image["tar (JPEG as is)"]
    print(
        f"  npz / tar at the working size {bytes_per_image[f'npz {size[0]}x{size[1]}'] / tar_bytes:.2f}x, "
        f"at {DEPTH_ANYTHING_SIZE}x{DEPTH_ANYTHING_SIZE} "
        f"{bytes_per_image[f'npz {DEPTH_ANYTHING_SIZE}x{DEPTH_ANYTHING_SIZE}'] / tar_bytes:.2f}x"
    )
    print(
        f"training step, {name} ({config.model.backbone}, {precision}, {layout}): {train:.1f} img/s"
    )
    print(f"{'source':<8} {'img/s per worker':>17} {'train / worker':>15} {'workers needed':>15}")
    for label, rate in rates.items():
        ratio = train / rate
        print(f"{label:<8} {rate:>17.1f} {ratio:>14.3g}x {math.ceil(ratio):>15d}")
    print(f"tar / npz per worker: {rates['tar'] / rates['npz']:.2f}x")
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
