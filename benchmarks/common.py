"""Shared set-up for the benchmarks: a stage server in its own process, a corpus, a run."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROCEDURE = ("To return item {i}, sign in to your account, open Orders and pick the order. Choose Return next "
             "to the item, give a reason and print the label. Drop the parcel at a partner shop within 30 days "
             "of delivery; the refund follows within five working days.")


@contextmanager
def server_process(latency: str = "0", faults: dict[str, float] | None = None, seed: int = 0,
                   capacity: int | None = None, retry_after: float = 1.0):
    """`python -m benchmarks.stage_server` in a process of its own, so its CPU is not ours."""
    args = [sys.executable, "-m", "benchmarks.stage_server", "--latency", str(latency), "--seed", str(seed)]
    args += [f"--fault={k}={v}" for k, v in (faults or {}).items()]
    if capacity is not None:
        args += ["--capacity", str(capacity), "--retry-after", str(retry_after)]
    with url_of_process(args) as url:
        yield url


@contextmanager
def url_of_process(args: list[str]):
    """A server started as `args` (it prints its base URL on its first line), stopped on exit."""
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def get_json(url: str, path: str) -> dict:
    """GET `path` beside a server's /v1 (its /stats, /times, ...)."""
    with urllib.request.urlopen(url.removesuffix("/v1") + path) as resp:
        return json.loads(resp.read())


def server_stats(url: str) -> dict:
    return get_json(url, "/stats")


def write_corpus(path: Path, n: int, procedural: bool = True) -> Path:
    """A JSONL corpus of n distinct one-segment documents."""
    marker = "" if procedural else " NOT PROCEDURAL"
    with path.open("w") as fh:
        for i in range(n):
            fh.write(json.dumps({"text": PROCEDURE.format(i=i) + marker}) + "\n")
    return path


def run_config(corpus: Path, out: Path, workers: int, stages: str = "filter,extract,generate,refine,validate,judge",
               adaptive: bool = True):
    from gem_synth.running.corpus import CorpusOptions
    from gem_synth.programs.pipeline import Stages
    from gem_synth.running.runner import RunConfig

    return RunConfig(corpus=str(corpus), out=out, corpus_options=CorpusOptions(), stages=Stages.parse(stages),
                     workers=workers, track=False, progress=False, cache_dir=str(out / ".cache"),
                     near_duplicates=None,  # the corpora are numbered variants of one procedure, on purpose
                     adaptive=adaptive)


def plan(url: str, timeout: float | None = None, retries: int = 3):
    from gem_synth.backends.models import plan_models

    return plan_models({"model": "hosted_vllm/bench", "api_base": url, "api_key": "bench", "timeout": timeout,
                        "num_retries": retries}, {}, {})


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}"


def table(headers: list[str], rows: list[list]) -> str:
    cells = [[h for h in headers]] + [[f"{c:.3f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.rjust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
