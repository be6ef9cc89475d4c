"""Peers: gem-synth's run loop next to bespokelabs-curator, distilabel and NeMo Data Designer,
doing the same LM work against the same server, in one run.

The work: N chat calls (default 1000), the exact messages gem-synth's filter stage sends
for N one-segment documents (built once with `GEMJSONAdapter().format(RelevanceFilter, ...)`,
written to a JSONL the peers read), each with the same `response_format`. The stage server
rejects every segment ("not procedural"), so gem-synth makes one call per segment too. Each
(client, concurrency) gets a fresh stage server (`benchmarks/peers/timed_server.py`: the
stage server plus the times of the first workload request and the last answer, and a digest
of the messages received, which must be the same for every client) and runs in a process
of its own, started cold (a warm-up run of each client first fills the page and bytecode
caches):
- gem-synth: `runner.run`, filter stage only, `workers` = concurrency, adaptive (AIMD,
  the default: it starts at 2 calls and doubles per round trip); `gem-synth-fixed` is the
  same with `adaptive=False`.
- curator: `curator.LLM`, backend `openai` at the server, `max_concurrent_requests` =
  concurrency, request and token rate limits far above reach, its cache off.
- distilabel: `LoadDataFromDicts >> ChatGeneration(OpenAILLM(base_url=...))`, one replica,
  `input_batch_size` = concurrency (an async LLM sends a batch at once), `use_cache=False`.
- data-designer: a seed DataFrame of the prompts, one `LLMTextColumnConfig` (system prompt
  and prompt = the two messages), `max_parallel_requests` = concurrency. It lives in a venv of
  its own: in the peers venv it would move fsspec past datasets' pin (curator, distilabel).

How to read the table. answered: workload calls the server answered (must be N; "!" if the
client reports fewer parsed); extra: other requests (a rate-limit probe, a health check);
max / mean in flight: the server's peak of concurrent requests, and its summed request
time over the phase (how much of the concurrency the client kept in use).
wall: the client process end to end (interpreter start, imports, the run, writing its
output, exit); ideal = N x latency / concurrency; phase: first workload request to last
answer, as the server saw them; to 1st / after last: the wall time before and after it.
CPU: user+sys seconds of the client's process tree (wait4, which includes reaped
descendants) per call, over the whole process and, from 50 ms psutil samples of the tree,
within the phase alone (imports and output excluded). peak RSS: the largest sum of RSS
over the tree's processes (shared pages of forked workers count once per process).
The server shares the 2 cores with the client, so a client's CPU slows the server as well.

    python -m benchmarks.bench_peers [--calls 1000] [--latency 0.5] [--concurrency 16,64]
        [--clients gem-synth,gem-synth-fixed,curator,distilabel,data-designer]
        [--peers-venv DIR] [--dd-venv DIR] [--no-warmup]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import psutil

from benchmarks.common import ROOT, get_json, machine, server_stats, table, url_of_process, write_corpus

PEERS = ROOT / "benchmarks" / "peers"
CLIENTS = ("gem-synth", "gem-synth-fixed", "curator", "distilabel", "data-designer")
PEERS_REQUIREMENTS = ["bespokelabs-curator==0.1.31", "distilabel==1.5.3", "psutil"]
DD_REQUIREMENTS = ["data-designer==0.9.7", "psutil"]


@contextmanager
def timed_server(latency: float):
    """`benchmarks.peers.timed_server` in a process of its own; yields its base URL (…/v1)."""
    with url_of_process([sys.executable, "-m", "benchmarks.peers.timed_server", "--latency", str(latency)]) as url:
        yield url


def server_times(url: str) -> dict:
    return get_json(url, "/times")


def ensure_venv(path: Path, requirements: list[str], probe: str) -> str | None:
    """The venv's python, creating the venv when `probe` does not import there; None and a reason on failure."""
    python = path / "bin" / "python"
    if python.exists() and subprocess.run([python, "-c", probe], capture_output=True).returncode == 0:
        return None
    print(f"creating {path} ({' '.join(requirements)}) ...", flush=True)
    try:
        subprocess.run(["python3", "-m", "venv", str(path)], check=True, capture_output=True, text=True)
        subprocess.run([python, "-m", "pip", "install", "-q", *requirements], check=True, capture_output=True,
                       text=True, timeout=1800)
    except subprocess.CalledProcessError as exc:
        return f"pip install {' '.join(requirements)} failed: {(exc.stderr or '').strip().splitlines()[-1:]}"
    except subprocess.TimeoutExpired:
        return "pip install took over 30 minutes"
    if subprocess.run([python, "-c", probe], capture_output=True).returncode != 0:
        return f"{probe!r} fails in {path} after the install"
    return None


def write_prompts(tmp: Path, n: int) -> tuple[Path, Path]:
    """The corpus gem-synth reads and the JSONL of the messages its filter stage sends for it."""
    from gem_synth.programs.adapter import GEMJSONAdapter, output_schema
    from gem_synth.running.corpus import CorpusOptions, read_corpus
    from gem_synth.signatures import RelevanceFilter

    corpus = write_corpus(tmp / "corpus.jsonl", n, procedural=False)
    adapter = GEMJSONAdapter()
    prompts = tmp / "prompts.jsonl"
    with prompts.open("w") as fh:
        fh.write(json.dumps({"model": "bench", "response_format": output_schema(RelevanceFilter)}) + "\n")
        for segment in read_corpus(str(corpus), CorpusOptions()):
            messages = adapter.format(RelevanceFilter, demos=[], inputs={"text": segment.text})
            fh.write(json.dumps({"messages": messages}) + "\n")
    return corpus, prompts


class TreeSampler(threading.Thread):
    """Every `interval` s: time, CPU seconds (user+sys, own and reaped children's) and RSS summed
    over the process tree under `pid`, and how many processes it has."""

    def __init__(self, pid: int, interval: float = 0.05):
        super().__init__(daemon=True)
        self.root, self.interval = psutil.Process(pid), interval
        self.samples: list[tuple[float, float, int, int]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                return
            cpu = rss = alive = 0
            for p in procs:
                try:
                    with p.oneshot():
                        t = p.cpu_times()
                        cpu += t.user + t.system + t.children_user + t.children_system
                        rss += p.memory_info().rss
                        alive += 1
                except psutil.Error:
                    pass
            self.samples.append((time.time(), cpu, rss, alive))
            self.halt.wait(self.interval)

    def cpu_at(self, when: float) -> float:
        """The tree's CPU seconds at `when`, linear between the samples either side."""
        before = [s for s in self.samples if s[0] <= when]
        after = [s for s in self.samples if s[0] >= when]
        if not before:
            return after[0][1] if after else 0.0
        if not after:
            return before[-1][1]
        (t0, c0, *_), (t1, c1, *_) = before[-1], after[0]
        return c0 if t1 == t0 else c0 + (c1 - c0) * (when - t0) / (t1 - t0)


def run_client(cmd: list, cwd: Path, env: dict, log: Path, timeout: float) -> dict:
    """Run one client to its end: wall, wait4 rusage of its tree, psutil samples, its RESULT line."""
    started, started_at = time.perf_counter(), time.time()
    with log.open("w") as err, (log.with_suffix(".out")).open("w") as out:
        proc = subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=env, stdout=out, stderr=err,
                                start_new_session=True)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        killer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
        killer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        killer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        sampler.halt.set()
        sampler.join()
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # any worker the client left behind (its own group only)
    except OSError:
        pass
    lines = [ln for ln in log.with_suffix(".out").read_text().splitlines() if ln.startswith("RESULT ")]
    result = json.loads(lines[-1][7:]) if lines else {}
    return {"rc": proc.returncode, "wall": wall, "started_at": started_at, "ended_at": started_at + wall,
            "cpu": usage.ru_utime + usage.ru_stime, "sys": usage.ru_stime, "maxrss_mb": usage.ru_maxrss / 1024,
            "sampler": sampler, "result": result}


def client_command(name: str, corpus: Path, prompts: Path, out: Path, url: str, concurrency: int,
                   pythons: dict[str, str]) -> tuple[list, Path]:
    if name in ("gem-synth", "gem-synth-fixed"):
        cmd = [sys.executable, "-m", "benchmarks.peers.gem_synth_client", corpus, out, url, concurrency]
        return cmd + (["--fixed"] if name == "gem-synth-fixed" else []), ROOT
    script = {"curator": "curator_client.py", "distilabel": "distilabel_client.py",
              "data-designer": "data_designer_client.py"}[name]
    out.mkdir(parents=True, exist_ok=True)
    return [pythons[name], PEERS / script, prompts, url, concurrency, out], out


def measure(name: str, n: int, latency: float, concurrency: int, corpus: Path, prompts: Path, work: Path,
            pythons: dict[str, str], env: dict) -> dict:
    with timed_server(latency) as url:
        tag = f"{name}-{concurrency}-{n}-{latency:g}"
        cmd, cwd = client_command(name, corpus, prompts, work / tag, url, concurrency, pythons)
        ideal = n * latency / concurrency
        run = run_client(cmd, cwd, env, work / f"{tag}.log", timeout=max(600.0, 30 * ideal))
        stats, times = server_stats(url), server_times(url)
    run.update(stats=stats, times=times, ideal=ideal, log=work / f"{tag}.log")
    return run


def row(name: str, concurrency: int, n: int, m: dict) -> list:
    times, sampler, ideal = m["times"], m["sampler"], m["ideal"]
    first, last = times["first"] or m["started_at"], times["last"] or m["ended_at"]
    phase = last - first
    phase_cpu = sampler.cpu_at(last) - sampler.cpu_at(first)
    cpu = max(m["cpu"], max((s[1] for s in sampler.samples), default=0.0))
    peak_mb = max(m["maxrss_mb"], max((s[2] for s in sampler.samples), default=0) / 2**20)
    procs = max((s[3] for s in sampler.samples), default=1)
    answered = f"{times['calls']}" + ("" if m["result"].get("answered") == n else "!")
    mean_in_flight = m["stats"]["busy_seconds"] / phase if phase > 0 else 0.0
    return [name, concurrency, answered, times["other"], m["stats"]["max_in_flight"], mean_in_flight, m["wall"],
            ideal, m["wall"] / ideal, phase, phase / ideal, first - m["started_at"], m["ended_at"] - last,
            cpu * 1000 / n, m["sys"] * 1000 / n, phase_cpu * 1000 / n, peak_mb, procs]


HEADERS = ["client", "conc", "answered", "extra req", "max in flight", "mean in flight", "wall s", "ideal s",
           "wall/ideal", "phase s", "phase/ideal", "to 1st s", "after last s", "CPU ms/call", "sys ms/call",
           "phase CPU ms/call", "peak RSS MB", "procs"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--concurrency", default="16,64")
    parser.add_argument("--clients", default=",".join(CLIENTS))
    default_peers = Path("/tmp/peers") if Path("/tmp/peers/bin/python").exists() else ROOT / "benchmarks/.peers-venv"
    default_dd = (Path("/tmp/peers-dd") if Path("/tmp/peers-dd/bin/python").exists()
                  else ROOT / "benchmarks/.peers-dd-venv")
    parser.add_argument("--peers-venv", type=Path, default=default_peers, help="venv with curator and distilabel")
    parser.add_argument("--dd-venv", type=Path, default=default_dd, help="venv with data-designer")
    parser.add_argument("--no-warmup", action="store_true", help="skip the small warm-up run of each client")
    args = parser.parse_args()
    clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    unknown = set(clients) - set(CLIENTS)
    if unknown:
        parser.error(f"unknown client(s) {sorted(unknown)}; choose from {', '.join(CLIENTS)}")
    concurrencies = [int(c) for c in args.concurrency.split(",")]

    skipped: dict[str, str] = {}
    pythons: dict[str, str] = {}
    if {"curator", "distilabel"} & set(clients):
        reason = ensure_venv(args.peers_venv, PEERS_REQUIREMENTS, "import bespokelabs.curator, distilabel, psutil")
        for c in ("curator", "distilabel"):
            if reason:
                skipped[c] = reason
            pythons[c] = str(args.peers_venv / "bin" / "python")
    if "data-designer" in clients:
        reason = ensure_venv(args.dd_venv, DD_REQUIREMENTS, "import data_designer.interface, psutil")
        if reason:
            skipped["data-designer"] = reason
        pythons["data-designer"] = str(args.dd_venv / "bin" / "python")
    clients = [c for c in clients if c not in skipped]

    # The same for every client: offline hubs, no progress bars, tiktoken's cl100k_base from LiteLLM's copy
    # (curator and Data Designer's profiler count tokens with it and would otherwise download it).
    tokenizers = Path(importlib.util.find_spec("litellm").origin).parent / "litellm_core_utils" / "tokenizers"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TQDM_DISABLE": "1",
           "TIKTOKEN_CACHE_DIR": str(tokenizers)}

    rows, bodies, digests, problems = [], {}, {}, []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        corpus, prompts = write_prompts(tmp, args.calls)
        if not args.no_warmup:
            small = tmp / "warm"
            small.mkdir()
            warm_corpus, warm_prompts = write_prompts(small, 8)
            for name in clients:
                m = measure(name, 8, 0.0, 4, warm_corpus, warm_prompts, small, pythons, env)
                print(f"warm-up {name}: {m['wall']:.1f}s, rc {m['rc']}", flush=True)
        for concurrency in concurrencies:
            for name in clients:
                m = measure(name, args.calls, args.latency, concurrency, corpus, prompts, tmp, pythons, env)
                rows.append(row(name, concurrency, args.calls, m))
                bodies.setdefault(name, sorted(m["times"]["bodies"]))
                digests.setdefault(concurrency, {})[name] = m["times"]["digest"]
                if m["rc"] != 0 or m["times"]["calls"] != args.calls or m["result"].get("answered") != args.calls:
                    tail = " | ".join(m["log"].read_text().strip().splitlines()[-3:])[-400:]
                    problems.append(f"{name} at {concurrency}: rc {m['rc']}, server answered {m['times']['calls']}, "
                                    f"client parsed {m['result'].get('answered')}: {tail}")
                print(f"{name} at {concurrency}: {m['wall']:.1f}s (ideal {m['ideal']:.1f}s), rc {m['rc']}", flush=True)

    print(f"\nPeers: {args.calls} chat calls at {args.latency * 1000:.0f} ms each, one client process per row "
          f"({machine()})\n")
    print(table(HEADERS, rows))
    same = all(len(set(d.values())) == 1 for d in digests.values())
    print(f"\nprompts identical across clients (server-side digest of the messages): {'yes' if same else 'NO'}")
    for name, keys in bodies.items():
        print(f"request body of {name}: {', '.join(['messages', *keys])}")
    for name, reason in skipped.items():
        print(f"{name}: not measured: {reason}")
    for p in problems:
        print(f"problem: {p}")


if __name__ == "__main__":
    main()
