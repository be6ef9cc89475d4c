"""Memory: peak RSS while streaming a large corpus, against a small one.

The stage server answers every filter call with "not procedural", so each segment costs
one LM call and the run is quick; what grows, if anything, is the run loop's own state.
"In loop" is the peak while streaming; "with tables" includes building the output
datasets from the journal at the end (Arrow files, memory-mapped, count in RSS).

    python -m benchmarks.bench_memory [--sizes 1000,100000] [--workers 8]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, machine, plan, run_config, server_process, server_stats, table, write_corpus


def child(corpus: str, out: str, url: str, workers: int) -> None:
    import gem_synth.running.runner as runner

    loop_peak = []
    write_tables = runner.write_tables

    def measured(*args, **kwargs):  # the peak of the streaming loop, before the tables are built
        loop_peak.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        return write_tables(*args, **kwargs)

    runner.write_tables = measured
    started = time.perf_counter()
    summary = runner.run(run_config(Path(corpus), Path(out), workers), plan(url))
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{summary.segments} {summary.outcomes.get('filtered_out', 0)} {time.perf_counter() - started:.1f} "
          f"{loop_peak[0]} {peak_kib}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--child", nargs=4, metavar=("CORPUS", "OUT", "URL", "WORKERS"))
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], args.child[1], args.child[2], int(args.child[3]))
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory() as tmp, server_process("0") as url:
            corpus = write_corpus(Path(tmp) / "corpus.jsonl", n, procedural=False)
            out = subprocess.run([sys.executable, "-m", "benchmarks.bench_memory", "--child", str(corpus),
                                  str(Path(tmp) / "out"), url, str(args.workers)], cwd=ROOT, capture_output=True,
                                 text=True, check=True).stdout.split()
            segments, filtered, seconds = int(out[0]), int(out[1]), float(out[2])
            loop_peak, peak = int(out[3]), int(out[4])
            journal_mb = (Path(tmp) / "out" / "journal.jsonl").stat().st_size / 2**20
            rows.append([n, segments, filtered, server_stats(url)["requests"], seconds, segments / seconds,
                         loop_peak / 1024, peak / 1024, journal_mb])
            print(f"{n}: {seconds:.0f}s, peak {peak / 1024:.0f} MiB", flush=True)
    print(f"\nPeak RSS streaming a corpus, filter answers only, {args.workers} workers ({machine()})\n")
    print(table(["corpus segments", "segments done", "filtered out", "LM calls", "wall s", "seg/s",
                 "peak RSS in loop MiB", "peak RSS with tables MiB", "journal MiB"], rows))


if __name__ == "__main__":
    main()
