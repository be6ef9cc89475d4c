"""Faults: with 10% of calls failing in each of six ways, is every segment accounted for?

Runs the same corpus against a healthy server and a faulty one (500, 429 with
Retry-After, hung request, truncated body, malformed content, no choices; each 10% of
calls) and reports outcomes, losses, duplicates, the retries the faults cost and the
extra wall time.

    python -m benchmarks.bench_faults [--segments 60] [--workers 8]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

import datasets

from benchmarks.common import machine, plan, run_config, server_process, server_stats, table, write_corpus
from benchmarks.stage_server import FAULTS


def one(n: int, workers: int, faults: dict[str, float], timeout: float, retries: int) -> list:
    from gem_synth.running.runner import run

    with tempfile.TemporaryDirectory() as tmp, server_process("0.05", faults, seed=7) as url:
        corpus = write_corpus(Path(tmp) / "corpus.jsonl", n)
        out = Path(tmp) / "out"
        started = time.perf_counter()
        run(run_config(corpus, out, workers), plan(url, timeout=timeout, retries=retries))
        wall = time.perf_counter() - started
        stats = server_stats(url)
        accepted = datasets.load_from_disk(str(out / "trajectories"))
        rejects = datasets.load_from_disk(str(out / "rejects"))
        ids = list(accepted["id"]) + list(rejects["id"])
        outcomes = Counter(rejects["outcome"])
        return [sum(stats["faults"].values()), stats["requests"], accepted.num_rows,
                ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) or "-", n - len(set(ids)),
                len(ids) - len(set(ids)), wall]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--segments", type=int, default=60)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--rate", type=float, default=0.1)
    parser.add_argument("--timeout", type=float, default=3.0)
    parser.add_argument("--retries", type=int, default=3)
    args = parser.parse_args()
    healthy = one(args.segments, args.workers, {}, args.timeout, args.retries)
    faulty = one(args.segments, args.workers, {f: args.rate for f in FAULTS}, args.timeout, args.retries)
    headers = ["server", "faults injected", "LM requests", "accepted", "rejected (outcome n)", "lost",
               "duplicated", "wall s"]
    print(f"\nFaults at {args.rate:.0%} per kind ({', '.join(FAULTS)}), {args.segments} segments, "
          f"{args.workers} workers, timeout {args.timeout}s, {args.retries} retries ({machine()})\n")
    print(table(headers, [["healthy", *healthy], ["faulty", *faulty]]))
    print(f"\nextra requests (retries and re-asks): {faulty[1] - healthy[1]}; "
          f"extra wall time: {faulty[-1] - healthy[-1]:.1f} s")


if __name__ == "__main__":
    main()
