"""Resume: kill -9 a run half way, rerun it, then rerun the finished run.

The second run must call the LM only for segments the first did not finish (fewer calls
than that when stage calls of in-flight segments were already cached), and the third
must make no call at all.

    python -m benchmarks.bench_resume [--segments 120] [--workers 8]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, machine, server_process, server_stats, table, write_corpus

CALLS_PER_SEGMENT = 5


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--segments", type=int, default=120)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--latency", default="0.05")
    args = parser.parse_args()
    n = args.segments
    with tempfile.TemporaryDirectory() as tmp, server_process(args.latency) as url:
        corpus = write_corpus(Path(tmp) / "corpus.jsonl", n)
        out = Path(tmp) / "out"
        cmd = [sys.executable, "-m", "gem_synth.cli", "run", str(corpus), "--out", str(out), "--lm", "hosted_vllm/bench",
               "--api-base", url, "--api-key", "bench", "--workers", str(args.workers), "--no-track",
               "--no-progress", "--cache-dir", str(Path(tmp) / "cache"), "--near-duplicates", "0"]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        first = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        journal = out / "journal.jsonl"
        while not journal.exists() or journal.read_text().count("\n") < n // 2:
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait()
        finished = journal.read_text().count("\n")
        calls_1 = server_stats(url)["requests"]
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        calls_2 = server_stats(url)["requests"] - calls_1
        entries = [json.loads(line) for line in journal.read_text().splitlines()]
        again = {e["id"] for e in entries[:finished]} & {e["id"] for e in entries[finished:]}
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        calls_3 = server_stats(url)["requests"] - calls_1 - calls_2
        ids = [e["id"] for e in entries]
    unfinished = n - finished
    rows = [["killed at half way", n, finished, n * CALLS_PER_SEGMENT, calls_1 - 1, "-"],
            ["rerun", unfinished, unfinished, unfinished * CALLS_PER_SEGMENT, calls_2 - 1,
             f"{(calls_2 - 1) / (unfinished * CALLS_PER_SEGMENT):.2f}"],
            ["rerun of the finished run", 0, 0, 0, calls_3, "-"]]
    print(f"\nResume after kill -9 at half way, {n} segments, {args.workers} workers ({machine()})\n")
    print(table(["run", "segments to do", "segments finished", "calls if nothing were cached", "LM calls made",
                 "made / uncached"], rows))
    print(f"\nfinished segments run again: {len(again)}; journal entries {len(ids)}, distinct ids {len(set(ids))}; "
          "LM calls exclude each run's one pre-flight call")


if __name__ == "__main__":
    main()
