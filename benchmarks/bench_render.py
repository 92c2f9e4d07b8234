"""Throughput of the procedural RGB-D renderer, in images per second, for both domains.

    python benchmarks/bench_render.py                      # 128x128, 1 and 2 threads, 2 workers
    python benchmarks/bench_render.py --size 96 --count 512 --repeats 5

Each configuration renders `count` images `repeats` times after a warm-up and reports the best
run (the machine is shared; the best run is the least disturbed one). "threads" is torch's
intra-op thread count in one process (RenderConfig.threads); "workers" renders independent
shards in separate single-threaded processes, which is how a dataset build can use several
cores.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

from depth_core.synth.render import RenderConfig, render_batch, render_shard


def _time_in_process(config: RenderConfig, count: int, repeats: int, threads: int) -> float:
    config = config.model_copy(update={"threads": threads})
    render_batch(
        config, seed=0, count=min(count, 2 * config.chunk_size)
    )  # warm-up: texture bank, caches
    best = float("inf")
    for repeat in range(repeats):
        start = time.perf_counter()
        render_batch(config, seed=repeat + 1, count=count)
        best = min(best, time.perf_counter() - start)
    return count / best


def _worker_init(config_json: str) -> None:
    render_batch(RenderConfig.model_validate_json(config_json), seed=0, count=8)


def _render_shard(args: tuple[str, int, int]) -> int:
    config_json, shard, count = args
    render_shard(
        RenderConfig.model_validate_json(config_json), base_seed=1, shard_index=shard, count=count
    )
    return count


def _time_workers(config: RenderConfig, count: int, repeats: int, workers: int) -> float:
    config_json = config.model_dump_json()
    per_shard = max(1, count // (4 * workers))
    shards = max(workers, count // per_shard)
    context = mp.get_context("spawn")
    best = float("inf")
    with context.Pool(workers, initializer=_worker_init, initargs=(config_json,)) as pool:
        pool.map(_render_shard, [(config_json, i, 4) for i in range(workers)])  # all workers warm
        for repeat in range(repeats):
            jobs = [(config_json, 1000 * (repeat + 1) + i, per_shard) for i in range(shards)]
            start = time.perf_counter()
            done = sum(pool.map(_render_shard, jobs, chunksize=1))
            best = min(best, time.perf_counter() - start)
    return done / best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=128, help="image height and width")
    parser.add_argument("--count", type=int, default=256, help="images per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the best is reported")
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[1, 2], help="torch threads (one process)"
    )
    parser.add_argument(
        "--workers", type=int, nargs="*", default=[2], help="single-threaded worker processes"
    )
    parser.add_argument(
        "--domains", nargs="+", default=["synthetic", "target"], choices=["synthetic", "target"]
    )
    parser.add_argument("--chunk-size", type=int, default=16)
    args = parser.parse_args(argv)

    size, runs = f"{args.size}x{args.size}", f"best of {args.repeats} runs of {args.count} images"
    print(f"renderer throughput at {size}, {runs}")
    for domain in args.domains:
        config = RenderConfig(
            threads=1, domain=domain, height=args.size, width=args.size, chunk_size=args.chunk_size
        )
        for threads in args.threads:
            rate = _time_in_process(config, args.count, args.repeats, threads)
            print(f"{domain:9s}  1 process x {threads} thread(s): {rate:7.1f} images/s", flush=True)
        for workers in args.workers:
            rate = _time_workers(config, args.count, args.repeats, workers)
            print(f"{domain:9s}  {workers} processes x 1 thread : {rate:7.1f} images/s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
