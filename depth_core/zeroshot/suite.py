"""Run checkpoints over benchmarks: every model sees the same images, scored the same way.

`check_roots` settles which benchmarks can run before any model is loaded (a missing root is
skipped with its reason, not an error); `evaluate_benchmark` scores one model on one depth
benchmark, `evaluate_da2k` on DA-2K pairs; `run_suite` loads each checkpoint once and runs it
over every runnable benchmark. Results are plain dicts:
``{model: {benchmark: {"abs_rel", "delta1", "n_images", "n_skipped", "skipped_by_code"}}}``
(DA-2K: ``pair_accuracy``, ``n_pairs`` instead of the two depth metrics).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from depth_core.data.source_files import SkippedFile
from depth_core.zeroshot.protocol import PROTOCOLS
from depth_core.zeroshot.readers import READERS
from depth_core.zeroshot.samples import BenchmarkRootError, BenchmarkSample

DA2K = "da2k"
SUITES: tuple[str, ...] = (*PROTOCOLS, DA2K)
SUITES_WITH_SPLITS: tuple[str, ...] = tuple(n for n, r in READERS.items() if r.takes_split)
DA2K_ANNOTATIONS = "annotations.json"

# images -> disparities at the images' sizes (InferenceModel.predict with its settings bound)
Predict = Callable[[list[np.ndarray]], list[np.ndarray]]


@dataclass
class Runnable:
    """A benchmark whose root was found: its entries, listed once for every model."""

    name: str
    root: Path
    entries: list[Any] = field(default_factory=list)


def check_roots(
    suites: Sequence[str],
    roots: Mapping[str, str | Path],
    splits: Mapping[str, str | Path] | None = None,
) -> tuple[list[Runnable], dict[str, str]]:
    """The benchmarks that can run (with their entries) and, for the others, why not."""
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; choose from {', '.join(SUITES)}")
    splits = splits or {}
    runnable: list[Runnable] = []
    skipped: dict[str, str] = {}
    for name in dict.fromkeys(suites):
        if name not in roots:
            skipped[name] = f"no root given (--root {name}=DIR)"
            continue
        root = Path(roots[name])
        if not root.is_dir():
            skipped[name] = f"root {root} is not a folder"
            continue
        try:
            if name == DA2K:
                entries = [_da2k_annotations(root)]
            else:
                split = Path(splits[name]) if name in splits else None
                entries = READERS[name].entries(root, split)
        except BenchmarkRootError as exc:
            skipped[name] = str(exc)
            continue
        if not entries:
            skipped[name] = f"nothing to evaluate under {root}"
            continue
        runnable.append(Runnable(name, root, entries))
    return runnable, skipped


def _da2k_annotations(root: Path) -> Path:
    path = root / DA2K_ANNOTATIONS
    if not path.is_file():
        raise BenchmarkRootError(
            f"{root} has no {DA2K_ANNOTATIONS} (expected the DA-2K release: annotations.json "
            "beside the images it names)"
        )
    return path


def _samples(
    benchmark: Runnable, skipped: list[dict[str, str]], max_images: int | None
) -> Iterator[BenchmarkSample]:
    reader = READERS[benchmark.name]
    entries = benchmark.entries if max_images is None else benchmark.entries[:max_images]
    for entry in entries:
        try:
            yield reader.load(benchmark.root, entry)
        except SkippedFile as skip:
            skipped.append(skip.entry(reader.entry_name(entry)))


def _chunks(samples: Iterator[BenchmarkSample], size: int) -> Iterator[list[BenchmarkSample]]:
    chunk: list[BenchmarkSample] = []
    for sample in samples:
        chunk.append(sample)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def evaluate_benchmark(
    predict: Predict,
    benchmark: Runnable,
    batch_size: int = 4,
    max_images: int | None = None,
    progress: bool = True,
    desc: str = "",
) -> dict[str, Any]:
    """One model on one depth benchmark: per-image AbsRel and delta1 averaged over images.

    At most `batch_size` pictures are in memory at once (ETH3D frames are 24 Mpx). Entries that
    cannot be read, and images without a single scored pixel, are skipped and counted by code.
    """
    protocol = PROTOCOLS[benchmark.name]
    skipped: list[dict[str, str]] = []
    abs_rel: list[float] = []
    delta1: list[float] = []
    total = (
        len(benchmark.entries) if max_images is None else min(max_images, len(benchmark.entries))
    )
    bar = tqdm(total=total, desc=desc or benchmark.name, unit="img", disable=not progress)
    for chunk in _chunks(_samples(benchmark, skipped, max_images), batch_size):
        predictions = predict([sample.image for sample in chunk])
        for sample, disparity in zip(chunk, predictions):
            score = protocol.score(disparity, sample.depth, sample.valid)
            if score is None or not all(math.isfinite(v) for v in score.values()):
                skipped.append(
                    SkippedFile("no_valid_pixels", "no ground-truth pixel in range").entry(
                        sample.name
                    )
                )
                continue
            abs_rel.append(score["abs_rel"])
            delta1.append(score["delta1"])
        bar.update(len(chunk))
    bar.update(total - bar.n)
    bar.close()
    return {
        "abs_rel": _mean(abs_rel),
        "delta1": _mean(delta1),
        "n_images": len(abs_rel),
        "n_skipped": len(skipped),
        "skipped_by_code": dict(sorted(Counter(s["code"] for s in skipped).items())),
        "skipped": skipped,
    }


def evaluate_da2k(predict: Predict, benchmark: Runnable, batch_size: int = 4) -> dict[str, Any]:
    """DA-2K pair accuracy (`depth_core.voting.da2k.evaluate_pairs`, as `evaluate-pairs`)."""
    from depth_core.voting.da2k import evaluate_pairs

    result = evaluate_pairs(predict, benchmark.entries[0], benchmark.root, batch_size=batch_size)
    return {
        "pair_accuracy": result["accuracy"],
        "n_pairs": result["n_pairs"],
        "n_images": result["n_images"],
        "n_skipped": result["n_missing_images"],
        "skipped_by_code": (
            {"missing": result["n_missing_images"]} if result["n_missing_images"] else {}
        ),
        "skipped": [
            SkippedFile("missing", "image named in annotations.json not found").entry(key)
            for key in result["missing_images"]
        ],
    }


def run_suite(
    models: Mapping[str, Callable[[], Predict]],
    benchmarks: Sequence[Runnable],
    batch_size: int = 4,
    max_images: int | None = None,
    progress: bool = True,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Each model (name -> a loader returning its predict function, called once) on every
    benchmark, in the order given."""
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for name, load in models.items():
        predict = load()
        results[name] = {}
        for benchmark in benchmarks:
            if benchmark.name == DA2K:
                results[name][DA2K] = evaluate_da2k(predict, benchmark, batch_size)
            else:
                results[name][benchmark.name] = evaluate_benchmark(
                    predict,
                    benchmark,
                    batch_size,
                    max_images,
                    progress,
                    desc=f"{Path(name).name} {benchmark.name}",
                )
    return results
