"""The two engines on the same work: threads in one process against a Ray Dataset on two
worker processes, at the same total concurrency.

Each configuration runs the same corpus through all five stages (5 LM calls a segment)
against the stage server at a fixed latency per call, so the ideal wall time
(calls x latency / workers) is the same for both. The Ray engine starts a local cluster
for the run (`--engine ray` without an address) and its wall time includes that start;
"start s" is the time to the first finished segment (process start, imports, for Ray the
cluster and its actors, and one segment's five calls), so "(wall-start)/ideal" tells the
steady state apart. Both engines write the same tables: the accepted counts must agree.

    python -m benchmarks.bench_engines [--latency 0.5] [--workers 16] [--segments 64]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, machine, server_process, server_stats, table, write_corpus


def run_engine(engine: list[str], corpus: Path, out: Path, url: str, workers: int) -> tuple[float, float, dict]:
    """One `gem-synth run` in its own process: (wall s, s to the first journalled segment, summary)."""
    cmd = [sys.executable, "-m", "gem_synth.cli", "run", str(corpus), "--out", str(out), "--lm", "hosted_vllm/bench",
           "--api-base", url, "--api-key", "bench", "--no-track", "--no-progress", "--workers", str(workers),
           "--near-duplicates", "0", "--cache-dir", str(out.parent / f"cache-{out.name}"), *engine]
    journal = out / "journal.jsonl"
    started = time.perf_counter()
    child = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = None
    while child.poll() is None:
        if first is None and journal.exists() and journal.stat().st_size:
            first = time.perf_counter() - started
        time.sleep(0.02)
    wall = time.perf_counter() - started
    if child.returncode:
        raise SystemExit(f"{engine or 'local'} failed: {child.stderr.read()[-2000:]}")
    return wall, first or wall, json.loads((out / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--segments", type=int, default=64)
    args = parser.parse_args()
    engines = {"local (threads)": [], "ray, 2 worker processes": ["--engine", "ray", "--ray-actors", "2"]}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_corpus(Path(tmp) / "corpus.jsonl", args.segments)
        for i, (name, engine) in enumerate(engines.items()):
            with server_process(str(args.latency)) as url:
                wall, first, summary = run_engine(engine, corpus, Path(tmp) / f"out{i}", url, args.workers)
                stats = server_stats(url)
            ideal = stats["requests"] * args.latency / args.workers
            rows.append([name, args.segments, summary["accepted"], stats["requests"], first, wall, ideal, wall / ideal,
                         (wall - first) / ideal, stats["max_in_flight"]])
            print(f"{name}: {wall:.1f}s", flush=True)
    print(f"\nEngines at {args.latency * 1000:.0f} ms per LM call, {args.workers} in flight ({machine()})\n")
    print(table(["engine", "segments", "accepted", "LM calls", "start s", "wall s", "ideal s", "wall/ideal",
                 "(wall-start)/ideal", "max in flight"], rows))


if __name__ == "__main__":
    main()
