"""Throughput against concurrency: does the run loop keep the LM busy?

Each configuration runs 4 x workers segments through all five stages (5 LM calls each)
against the stage server at a fixed latency per call, so the ideal wall time
(calls x latency / workers) is the same for every row. LM-busy is the server's summed
request time over (wall x workers): the share of the worker slots spent waiting on the LM.

    python -m benchmarks.bench_throughput [--latency 0.5] [--workers 1,2,4,8,16,32,64]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine, plan, run_config, server_process, server_stats, table, write_corpus


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--workers", default="1,2,4,8,16,32,64")
    parser.add_argument("--per-worker", type=int, default=4, help="segments per worker")
    args = parser.parse_args()
    from gem_synth.running.runner import run

    rows = []
    for workers in [int(w) for w in args.workers.split(",")]:
        with tempfile.TemporaryDirectory() as tmp, server_process(str(args.latency)) as url:
            n = args.per_worker * workers
            corpus = write_corpus(Path(tmp) / "corpus.jsonl", n)
            started = time.perf_counter()
            summary = run(run_config(corpus, Path(tmp) / "out", workers), plan(url))
            wall = time.perf_counter() - started
            stats = server_stats(url)
            calls = stats["requests"]
            ideal = calls * args.latency / workers
            rows.append([workers, n, summary.accepted, calls, wall, ideal, wall / ideal, n / wall * 60,
                         stats["busy_seconds"] / (wall * workers), stats["max_in_flight"]])
            print(f"workers={workers}: {wall:.1f}s", flush=True)
    print(f"\nThroughput at {args.latency * 1000:.0f} ms per LM call ({machine()})\n")
    print(table(["workers", "segments", "accepted", "LM calls", "wall s", "ideal s", "wall/ideal", "seg/min",
                 "LM-busy", "max in flight"], rows))


if __name__ == "__main__":
    main()
