"""`depth-distill predict` over thousands of images of mixed sizes: memory, throughput, outputs.

Generates --count images (sizes cycling from 64x64 to 480x640, JPEG and PNG, in folders of
500), runs `depth-distill predict` over the folder in a child process while sampling its
resident memory (VmRSS) and counting the outputs it has written, then in this process predicts
every image alone (what `depth-distill predict --input ONE_FILE` computes) and compares. Prints:

- resident memory after 10 % of the images, at the end, and the peak; growth between 10 % and
  100 % in MB per 1000 images, and the ratio end / 10 % (flat: about 1.0);
- throughput per tenth of the run in images/s, and the ratio last tenth / first-after-warm-up
  tenth (steady: about 1.0);
- every input's .npy and .png present, and the largest difference of a folder prediction from
  the single-image one, relative to the single-image maximum (the same: about 1e-6, float
  rounding of batch vs single convolutions); the single-image pass writes no files, so its
  images/s is the model's alone, the folder run's includes reading, colourising and writing.

    depth-distill bench predict [--count 5000] [--checkpoint CKPT] [--params params.yaml]
        [--batch-size 8] [--threads 1] [--compare N] [--keep DIR] [--json FILE]

The model: --checkpoint, else the first student of params.yaml (trained if its checkpoint
exists, random weights of the same architecture otherwise; memory and speed do not depend on
the weights).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from depth_core.atomic_io import write_json

SIZES = ((64, 64), (96, 128), (128, 96), (200, 300), (240, 320), (375, 500), (480, 640), (333, 77))
FOLDER_SIZE = 500


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000, help="images to generate")
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (both runs)")
    parser.add_argument(
        "--compare", type=int, default=None, help="images to re-predict alone (default: all)"
    )
    parser.add_argument("--keep", type=Path, default=None, help="work here and keep the files")
    parser.add_argument("--json", type=Path, default=None)
    return parser.parse_args(argv)


def default_checkpoint(params_path: Path, folder: Path) -> Path:
    """The first student's trained checkpoint, else its architecture with random weights."""
    from depth_core.models import build_model, save_checkpoint
    from depth_core.models.checkpoint import CHECKPOINT_FILE
    from orchestration.params.schema import load_params

    params = load_params(params_path)
    name, student = next(iter(params.students.items()))
    trained = params_path.resolve().parent / "models" / "students" / name / CHECKPOINT_FILE
    if trained.exists():
        print(f"model: student {name} ({trained})", flush=True)
        return trained
    print(f"model: student {name}, random weights (no checkpoint at {trained})", flush=True)
    return save_checkpoint(
        folder / CHECKPOINT_FILE, build_model(student.model, load_pretrained=False)
    )


def generate(folder: Path, count: int) -> list[Path]:
    """`count` smooth-with-noise pictures of the sizes above, JPEG and PNG alternating."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        h, w = SIZES[i % len(SIZES)]
        rows = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
        cols = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
        tint = rng.random(3, dtype=np.float32)
        pixels = 200 * (rows * tint + cols * (1 - tint)) + rng.normal(0, 12, (h, w, 3))
        path = folder / f"part{i // FOLDER_SIZE:03d}" / f"img{i:05d}.{'jpg' if i % 2 else 'png'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def resident_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def written(output: Path) -> int:
    return sum(1 for _ in output.glob("*/*.png"))


def run_folder(args, checkpoint: Path, images: Path, output: Path) -> dict:
    """Predict the folder in a child process; samples of (seconds, outputs written, RSS MB)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    command = [
        sys.executable, "-m", "orchestration.cli", "predict", "--checkpoint", str(checkpoint),
        "--input", str(images), "--output", str(output), "--device", "cpu", "--amp", "fp32",
        "--batch-size", str(args.batch_size), "--quiet",
    ]  # fmt: skip
    start = time.perf_counter()
    log = output.parent / "predict.log"
    with open(log, "wb") as sink:
        child = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
    samples: list[tuple[float, int, float]] = []
    last_count = -1
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        rss = resident_mb(child.pid)
        count = written(output) if output.exists() else 0
        if rss is not None and count != last_count:
            samples.append((time.perf_counter() - start, count, rss))
            last_count = count
        time.sleep(0.25)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"predict failed: {log.read_text()[-2000:]}")
    # the last outputs land after the last sample: count them at the last resident size seen
    samples.append((seconds, written(output), samples[-1][2] if samples else 0.0))
    return {"seconds": seconds, "samples": samples, "peak_mb": usage.ru_maxrss / 1024}


def at_fraction(samples, total: int, fraction: float) -> tuple[float, int, float]:
    """The first sample with at least `fraction` of the outputs written."""
    return next(s for s in samples if s[1] >= fraction * total)


def tenths(samples, total: int) -> list[float]:
    """Images/s within each tenth of the outputs."""
    marks = [at_fraction(samples, total, k / 10) for k in range(1, 11)]
    first = next(s for s in samples if s[1] > 0)
    rates, previous = [], first
    for mark in marks:
        rates.append((mark[1] - previous[1]) / max(mark[0] - previous[0], 1e-9))
        previous = mark
    return rates


def compare_alone(args, checkpoint: Path, paths: list[Path], images: Path, output: Path) -> dict:
    """Each image predicted alone, as a one-file `depth-distill predict` does, against the
    folder run's .npy; also checks every .npy and .png exists."""
    import torch

    from depth_core.data.image_io import read_image
    from depth_core.inference import load_for_inference

    torch.set_num_threads(args.threads)
    missing = [
        p
        for p in paths
        for suffix in (".npy", ".png")
        if not (output / p.relative_to(images).with_suffix(suffix)).is_file()
    ]
    model = load_for_inference(str(checkpoint), "cpu", "fp32")
    chosen = paths if args.compare is None else paths[: args.compare]
    worst, start = 0.0, time.perf_counter()
    for path in chosen:
        alone = model.predict([read_image(path)], batch_size=1)[0]
        together = np.load(output / path.relative_to(images).with_suffix(".npy"))
        if together.shape != alone.shape:
            raise SystemExit(f"{path}: folder output {together.shape}, alone {alone.shape}")
        scale = max(float(np.abs(alone).max()), 1e-12)
        worst = max(worst, float(np.abs(together - alone).max()) / scale)
    seconds = time.perf_counter() - start
    return {"missing": len(missing), "compared": len(chosen), "worst_relative": worst,
            "alone_images_per_s": len(chosen) / seconds}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        work = args.keep or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        checkpoint = args.checkpoint or default_checkpoint(args.params, work)
        images, output = work / "images", work / "predictions"
        t0 = time.perf_counter()
        paths = generate(images, args.count)
        print(f"generated {len(paths)} images in {time.perf_counter() - t0:.0f} s", flush=True)
        folder = run_folder(args, checkpoint, images, output)
        samples, total = folder["samples"], len(paths)
        early, end = at_fraction(samples, total, 0.1), samples[-1]
        peak = folder["peak_mb"]
        rates = tenths(samples, total)
        alone = compare_alone(args, checkpoint, paths, images, output)
    growth = (end[2] - early[2]) / max(end[1] - early[1], 1) * 1000
    first = next(s for s in samples if s[1] > 0)
    steady = (end[1] - first[1]) / max(end[0] - first[0], 1e-9)  # without start-up and loading
    result = {
        "count": total,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "seconds": folder["seconds"],
        "rss_mb_at_10pct": early[2],
        "rss_mb_at_end": end[2],
        "rss_mb_peak": peak,
        "rss_growth_mb_per_1000": growth,
        "images_per_s": steady,
        "images_per_s_by_tenth": rates,
        **alone,
    }
    print(
        f"predict {total} images, {args.threads} thread(s), batch {args.batch_size}: "
        f"{folder['seconds']:.0f} s, {steady:.1f} images/s after the first output"
    )
    print(
        f"resident memory: {early[2]:.0f} MB at 10 %, {end[2]:.0f} MB at the end, peak "
        f"{peak:.0f} MB; growth {growth:+.1f} MB / 1000 images; end / 10 % = "
        f"{end[2] / early[2]:.3f}"
    )
    print("images/s by tenth: " + " ".join(f"{r:.1f}" for r in rates))
    print(f"throughput last tenth / second tenth = {rates[-1] / rates[1]:.3f}")
    print(
        f"outputs missing: {alone['missing']}; {alone['compared']} images re-predicted alone "
        f"({alone['alone_images_per_s']:.1f} images/s, no files written): largest difference "
        f"{alone['worst_relative']:.2e} of the map's maximum; folder / alone throughput = "
        f"{steady / alone['alone_images_per_s']:.2f}"
    )
    if args.json:
        write_json(args.json, result)
    return 0 if alone["missing"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
