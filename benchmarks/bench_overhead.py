"""Overhead: CPU the run loop spends per segment outside the LM, split by stage.

At zero latency against the stage server (in its own process, so its CPU is not
counted), every CPU millisecond of this process is gem-synth's own: prompt formatting,
the HTTP client, parsing, validation, the journal and the output tables. Stage rows
are the CPU time of the thread inside each stage module (DSPy formatting, HTTP, parsing,
typed conversion). The last table puts that CPU next to the wall time of a segment at
a realistic latency.

    python -m benchmarks.bench_overhead [--segments 40] [--latency 0.5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

from benchmarks.common import machine, plan, run_config, server_process, table, write_corpus

CPU: dict[str, float] = defaultdict(float)


def _timed(name, fn):
    def wrapper(*args, **kwargs):
        started = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            CPU[name] += time.thread_time() - started
    return wrapper


@contextmanager
def instrumented():
    import gem_synth.running.journal as journal
    import gem_synth.programs.pipeline as pipeline
    import gem_synth.running.runner as runner
    import gem_synth.programs.stages as stages

    patched = [(stages.Filter, "forward", "filter"), (stages.Extract, "forward", "extract"),
               (stages.Generate, "forward", "generate"), (stages.Refine, "forward", "refine"),
               (stages.Judge, "forward", "judge"), (pipeline, "validate", "validate"),
               (journal.Journal, "append", "journal"), (runner, "write_tables", "tables"),
               (runner, "summarize", "summary")]
    originals = [(owner, attr, getattr(owner, attr)) for owner, attr, _ in patched]
    for owner, attr, name in patched:
        setattr(owner, attr, _timed(name, getattr(owner, attr)))
    try:
        yield
    finally:
        for owner, attr, original in originals:
            setattr(owner, attr, original)


def measure(latency: float, n: int) -> tuple[float, float, dict[str, float]]:
    from gem_synth.running.runner import run

    CPU.clear()
    with tempfile.TemporaryDirectory() as tmp, server_process(str(latency)) as url:
        corpus = write_corpus(Path(tmp) / "corpus.jsonl", n)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        with instrumented():
            run(run_config(corpus, Path(tmp) / "out", workers=1), plan(url))
        return time.process_time() - cpu0, time.perf_counter() - wall0, dict(CPU)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--segments", type=int, default=40)
    parser.add_argument("--latency", type=float, default=0.5)
    args = parser.parse_args()
    measure(0.0, 3)  # warm up imports and caches of compiled grammars, schemas
    cpu, wall, split = measure(0.0, args.segments)
    n = args.segments
    rows = [[name, split.get(name, 0.0) * 1000 / n] for name in
            ("filter", "extract", "generate", "refine", "judge", "validate", "journal", "tables", "summary")]
    rows.append(["(whole process)", cpu * 1000 / n])
    print(f"\nCPU per segment at zero latency, {n} segments, 1 worker ({machine()})\n")
    print(table(["part", "CPU ms / segment"], rows))
    slow_n = max(4, n // 10)
    cpu2, wall2, _ = measure(args.latency, slow_n)
    print(f"\nShare of wall time at {args.latency * 1000:.0f} ms per LM call ({slow_n} segments, 1 worker)\n")
    print(table(["CPU ms / segment", "wall ms / segment", "LM wait ms / segment", "overhead share"],
                [[cpu2 * 1000 / slow_n, wall2 * 1000 / slow_n, 5 * args.latency * 1000,
                  cpu2 / wall2]]))
    print(f"\n(zero-latency wall time: {wall * 1000 / n:.1f} ms per segment)")


if __name__ == "__main__":
    main()
