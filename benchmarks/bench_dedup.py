"""Near-duplicate index (MinHash LSH): CPU per segment and peak memory at 1k and 100k segments.

    .venv/bin/python -m benchmarks.bench_dedup [--sizes 1000,100000]

Each size runs in a process of its own (peak RSS is per process). Segments are distinct
500-word texts drawn from a 20k-word vocabulary, with every 50th a one-word edit of an
earlier one, so the index both inserts and finds twins. Prints a Markdown table; the
ratio columns compare each size with the first in the same run (machines here are noisy).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time

from benchmarks.common import ROOT, machine


def measure(n: int) -> dict:
    from gem_synth.running.dedup import NearDuplicateIndex

    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(20_000)]
    index = NearDuplicateIndex()
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    texts: list[str] = []
    found = 0
    cpu = 0.0
    for i in range(n):
        if i % 50 == 49:
            words = texts[rng.randrange(len(texts))].split()
            words[rng.randrange(len(words))] = "edited"
            text = " ".join(words)
        else:
            text = " ".join(rng.choices(vocab, k=500))
        if len(texts) < 200:
            texts.append(text)
        started = time.process_time()
        found += index.twin(f"s{i}", text) is not None
        cpu += time.process_time() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"segments": n, "near_copies_found": found, "expected": n // 50,
            "cpu_ms_per_segment": 1000 * cpu / n, "peak_rss_mb": peak / 1024, "index_rss_mb": (peak - base_rss) / 1024}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one)))
        return 0
    rows = []
    for n in map(int, args.sizes.split(",")):
        out = subprocess.run([sys.executable, "-m", "benchmarks.bench_dedup", "--one", str(n)], cwd=ROOT,
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout))
    print(f"machine: {machine()}")
    print("| segments | near-copies found / planted | CPU ms / segment | peak RSS MB | index MB | ms ratio | MB per 1k segments |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['segments']:,} | {r['near_copies_found']} / {r['expected']} | {r['cpu_ms_per_segment']:.2f} | "
              f"{r['peak_rss_mb']:.0f} | {r['index_rss_mb']:.0f} | {r['cpu_ms_per_segment'] / rows[0]['cpu_ms_per_segment']:.2f} | "
              f"{1000 * r['index_rss_mb'] / r['segments']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
