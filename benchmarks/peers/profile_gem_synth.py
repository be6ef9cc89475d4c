"""Where gem-synth's client CPU goes in bench_peers' workload (filter stage only, one call per
segment, every answer "not procedural"), by library and function.

py-spy samples the client process (`gem_synth_client`) in GIL mode: each sample is the
thread holding the GIL, so a sample is Python work being done, never a thread waiting on
the LM or on a lock (py-spy's idle detection counts threads blocked in a socket read as
busy; the GIL does not). CPU spent with the GIL released (the kernel, SQLite) is not seen;
compare "GIL-held ms / call" with bench_peers' "phase CPU ms/call". Samples are put in
one bucket each, by the first rule that matches the stack (see `bucket`); the per-call
table covers the worker threads and the run loop's own work on the main thread while
segments are in flight, not imports, the output tables or interpreter exit.

    python -m benchmarks.peers.profile_gem_synth [--calls 1000] [--concurrency 64] [--latency 0.5]
        [--rate 200] [--py-spy PATH] [--fixed] [--raw FILE]

py-spy: `pip install py-spy` (any venv; pass its path with --py-spy if it is not on PATH).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from benchmarks.common import ROOT, machine, table, write_corpus

FRAME = re.compile(r"(.*) \((.*):(\d+)\)$")


def parse(raw: Path) -> list[tuple[str, list[tuple[str, str]], int]]:
    """py-spy's raw (collapsed) output with --threads: (thread name, frames root first, count)."""
    out = []
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        _, _, rest = stack.partition(": ")
        thread, *frames = rest.split(";")
        parsed = []
        for f in frames:
            m = FRAME.match(f)
            parsed.append((m.group(1), m.group(2)) if m else (f, ""))
        out.append((thread, parsed, int(count)))
    return out


def library(path: str) -> str:
    if "site-packages/" in path:
        rest = path.split("site-packages/", 1)[1]
        if rest.startswith("dspy/"):
            return "dspy/" + rest.split("/")[1].removesuffix(".py")
        return rest.split("/")[0].removesuffix(".py")
    if path.startswith(str(ROOT) + "/"):
        return "gem_synth/" + path[len(str(ROOT)) + 1:]
    if path.startswith("<frozen importlib"):
        return "importlib"
    return "stdlib"


# Frames that say nothing about who asked for the work: the work is charged to the caller.
TRANSPARENT = ("stdlib", "pydantic", "pydantic_core", "typing_extensions", "typing_inspection", "importlib")


def bucket(thread: str, frames: list[tuple[str, str]]) -> tuple[str, str]:
    """(phase, category) of one sample."""
    funcs = [f for f, _ in frames]
    libs = [library(p) for _, p in frames]
    if not frames:
        return "no Python frame (interpreter start and exit)", ""
    if "importlib" in libs:
        return "startup (imports)", ""
    main = not thread.startswith("gem_")
    if main and any(f.endswith(("write_tables", "summarize", "_artifacts")) for f in funcs):
        return "after the loop (output tables, summary)", ""
    if main and not any(f.endswith("_loop") for f in funcs):
        return "startup and set-up (main thread)", ""
    phase = "per call"
    if main:
        if any("_record" in f or "Journal" in f for f in funcs):
            return phase, "gem-synth run loop: journal line per segment (main thread)"
        if any(f.endswith(("_to_send", "read_corpus", "_immediate", "_claim")) for f in funcs):
            return phase, "gem-synth run loop: corpus, dedup (main thread)"
        return phase, "thread pool: waiting on futures, wake-ups (main thread)"
    if "decoding_mode" in funcs:
        return phase, "gem-synth adapter: decoding_mode() asks DSPy's capabilities (model_info scan)"
    if "output_schema" in funcs:
        return phase, "gem-synth adapter: output_schema() rebuilds the response_format (pydantic model + JSON schema)"
    if "_price_result" in funcs:
        return phase, "DSPy LM: cost estimate per call (model_info scan)"
    if "_select_engine" in funcs:
        return phase, "DSPy LM: engine selection per call (LM15Engine, RouterConfig, resolve)"
    inner = next((i for i in range(len(frames) - 1, -1, -1) if libs[i] not in TRANSPARENT), None)
    if inner is None:
        return phase, "thread pool / GIL hand-off (futures, Condition.notify, thread start)"
    lib, path = libs[inner], frames[inner][1]
    if lib == "diskcache" or path.endswith("dspy/clients/cache.py"):
        return phase, "DSPy cache: request hash + diskcache (SQLite) get/put"
    if lib == "dspy/_vendor":
        if any("Transport" in f or "_ConnectionPool" in f or "Connection" in f for f in funcs):
            return phase, "DSPy's vendored lm15 client: HTTP transport (pool, socket, headers)"
        if any(f.endswith(("make_json_request", "json_dumps", "build_request", "_payload", "plan", "_build"))
               for f in funcs):
            return phase, "DSPy's vendored lm15 client: request building (JSON encode)"
        return phase, "DSPy's vendored lm15 client: response parsing, other"
    if lib == "dspy/adapters":
        names = [f for f, p in zip(funcs, libs) if p == "dspy/adapters"]
        if any("parse" in f for f in names):
            return phase, "DSPy adapter: parse the answer (JSON, typed fields)"
        if any("format" in f for f in names):
            return phase, "DSPy adapter: format the prompt"
        return phase, "DSPy adapter: other"
    if lib == "dspy/utils" and path.endswith("callback.py"):
        return phase, "DSPy callbacks (with_callbacks: getcallargs, Protocol checks, uuid4)"
    if lib.startswith("dspy/clients"):
        return phase, "DSPy LM: call, usage tracking, other"
    if lib.startswith("dspy/"):
        return phase, "DSPy other (Module, Predict, settings, Prediction)"
    if lib == "gem_synth/backends/concurrency.py":
        return phase, "gem-synth AIMD limit (DSPy callback)"
    if lib == "gem_synth/programs/adapter.py":
        return phase, "gem-synth adapter: other (field texts)"
    if lib.startswith("gem_synth/"):
        return phase, "gem-synth stages, pipeline, records (pydantic)"
    if lib == "litellm":
        return phase, "LiteLLM"
    return phase, f"other: {lib}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "/tmp/pyspy/bin/py-spy")
    parser.add_argument("--fixed", action="store_true", help="gem-synth with a fixed concurrency (no AIMD)")
    parser.add_argument("--raw", type=Path, help="analyse this py-spy raw file instead of running")
    args = parser.parse_args()
    from benchmarks.bench_peers import server_times, timed_server

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        raw = args.raw
        if raw is None:
            if not Path(args.py_spy).exists():
                sys.exit(f"py-spy not found at {args.py_spy}: pip install py-spy, then pass --py-spy PATH")
            corpus = write_corpus(tmp / "corpus.jsonl", args.calls, procedural=False)
            raw = tmp / "raw.txt"
            with timed_server(args.latency) as url:
                cmd = [args.py_spy, "record", "--gil", "--nonblocking", "--threads", "--full-filenames",
                       "--format", "raw", "-r", str(args.rate), "-o", str(raw), "--",
                       sys.executable, "-m", "benchmarks.peers.gem_synth_client", str(corpus), str(tmp / "out"), url,
                       str(args.concurrency)] + (["--fixed"] if args.fixed else [])
                subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
                times = server_times(url)
            assert times["calls"] == args.calls, times
            print(f"phase (first request to last answer): {times['last'] - times['first']:.2f} s")
        samples = parse(raw)

    phases, per_call = Counter(), Counter()
    for thread, frames, count in samples:
        phase, category = bucket(thread, frames)
        phases[phase] += count
        if category:
            per_call[category] += count
    total, loop = sum(phases.values()), sum(per_call.values())
    ms = 1000 / args.rate
    print(f"\ngem-synth client, {args.calls} calls at concurrency {args.concurrency}, py-spy --gil at {args.rate} Hz "
          f"({machine()})\n")
    print(table(["phase", "GIL-held s", "share"],
                [[k, v * ms / 1000, f"{100 * v / total:.1f}%"] for k, v in phases.most_common()]))
    print(f"\nPer call: {loop * ms / args.calls:.2f} ms GIL-held per call\n")
    print(table(["where (per call)", "share", "GIL-held ms / call"],
                [[k, f"{100 * v / loop:.1f}%", v * ms / args.calls] for k, v in per_call.most_common()]))


if __name__ == "__main__":
    main()
