"""Voting throughput: pairs judged per second by every expert, vectorised vs a per-pair loop.

Measured in one run on synthetic disparity maps: `judge` (gather + compare), the full vote
(judge + verdict + majority), and a plain Python loop over pairs as the reference ratio.

    python benchmarks/bench_voting.py [--experts 4] [--images 16] [--size 384] [--pairs 2000000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from depth_core.voting.pairs import PointPairs
from depth_core.voting.votes import is_consistent, judge, majority_vote


def _best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _loop_judge(disparities: np.ndarray, pairs: PointPairs) -> np.ndarray:
    """The obvious per-pair implementation, for the speed ratio."""
    votes = np.zeros((disparities.shape[0], len(pairs)), np.int8)
    for p in range(len(pairs)):
        i = pairs.image_index[p]
        (h1, w1), (h2, w2) = pairs.point1[p], pairs.point2[p]
        for e in range(disparities.shape[0]):
            a, b = disparities[e, i, h1, w1], disparities[e, i, h2, w2]
            votes[e, p] = 1 if a > b else (2 if b > a else 0)
    return votes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experts", type=int, default=4)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--size", type=int, default=384, help="square image side in pixels")
    parser.add_argument("--pairs", type=int, default=2_000_000)
    parser.add_argument("--loop-pairs", type=int, default=20_000, help="pairs for the loop")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    shape = (args.experts, args.images, args.size, args.size)
    disparities = rng.random(shape, dtype=np.float32)
    pairs = PointPairs.build(
        rng.integers(args.images, size=args.pairs),
        rng.integers(args.size, size=(args.pairs, 2)),
        rng.integers(args.size, size=(args.pairs, 2)),
    )
    ragged = [list(expert) for expert in disparities]

    t_judge = _best_of(lambda: judge(disparities, pairs), args.repeats)
    t_ragged = _best_of(lambda: judge(ragged, pairs), args.repeats)

    def full_vote():
        votes = judge(disparities, pairs)
        is_consistent(votes)
        majority_vote(votes)

    t_full = _best_of(full_vote, args.repeats)
    few = pairs.select(np.arange(min(args.loop_pairs, args.pairs)))
    start = time.perf_counter()
    loop_votes = _loop_judge(disparities, few)
    t_loop = time.perf_counter() - start
    if not np.array_equal(loop_votes, judge(disparities, few)):
        raise AssertionError("vectorised votes differ from the per-pair loop")

    rate = args.pairs / t_judge
    loop_rate = len(few) / t_loop
    print(f"experts={args.experts} images={args.images} size={args.size} pairs={args.pairs}")
    print(f"judge, stacked (E,N,H,W):   {rate / 1e6:8.2f} M pairs/s")
    print(f"judge, per-image lists:     {args.pairs / t_ragged / 1e6:8.2f} M pairs/s")
    print(f"judge + verdict + majority: {args.pairs / t_full / 1e6:8.2f} M pairs/s")
    print(f"per-pair Python loop:       {loop_rate / 1e6:8.4f} M pairs/s")
    print(f"ratio vectorised / loop:    {rate / loop_rate:8.0f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
