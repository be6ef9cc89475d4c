"""Adaptive concurrency against a rate-limited endpoint: goodput near its capacity, no failed segment.

A stage server admits N requests at once and answers 429 (Retry-After) to any more, like a
provider's concurrency limit. The same corpus runs through `gem-synth run` with 4N workers,
adaptive (the default: AIMD below the ceiling, backends/concurrency.py) and fixed
(`--fixed-concurrency`: 4N calls in flight, LiteLLM retrying each refusal), and with N
fixed workers as the ideal. Goodput is admitted requests per second over the N / latency
the endpoint can serve.

    python -m benchmarks.bench_adaptive [--capacity 4] [--segments 40] [--latency 0.5]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import datasets

from benchmarks.common import machine, plan, run_config, server_process, server_stats, table, write_corpus


def one(n: int, workers: int, capacity: int, latency: float, adaptive: bool, retries: int) -> list:
    from gem_synth.running.runner import run

    with tempfile.TemporaryDirectory() as tmp, server_process(str(latency), capacity=capacity) as url:
        corpus = write_corpus(Path(tmp) / "corpus.jsonl", n)
        out = Path(tmp) / "out"
        started = time.perf_counter()
        run(run_config(corpus, out, workers, adaptive=adaptive), plan(url, retries=retries))
        wall = time.perf_counter() - started
        stats = server_stats(url)
        accepted = datasets.load_from_disk(str(out / "trajectories")).num_rows
        rejects = Counter(datasets.load_from_disk(str(out / "rejects"))["outcome"])
        sessions = [json.loads(line) for line in (out / "sessions.jsonl").read_text().splitlines()]
        limits = next(iter((sessions[-1].get("concurrency") or {}).values()), {})
        goodput = stats["admitted"] / wall / (capacity / latency)
        return [workers, "adaptive" if adaptive else "fixed", accepted, sum(rejects.values()), stats["admitted"],
                stats["refused"], round(wall, 1), round(goodput, 2),
                f"{limits.get('lowest', '-')} / {limits.get('limit', '-')}" if limits else "-"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--capacity", type=int, default=4)
    parser.add_argument("--segments", type=int, default=40)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--retries", type=int, default=3)
    args = parser.parse_args()
    n, cap = args.segments, args.capacity
    rows = [one(n, cap, cap, args.latency, False, args.retries),
            one(n, 4 * cap, cap, args.latency, True, args.retries),
            one(n, 4 * cap, cap, args.latency, False, args.retries)]
    print(f"\nEndpoint admitting {cap} requests at once (429 + Retry-After: 1 above), {args.latency}s a call, "
          f"{n} segments of 6 calls, {args.retries} retries ({machine()})\n")
    print(table(["workers", "concurrency", "accepted", "failed segments", "admitted", "refused (429)", "wall s",
                 "goodput / capacity", "limit lowest / end"], rows))


if __name__ == "__main__":
    main()
