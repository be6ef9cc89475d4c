"""The main job: a corpus in, a dataset of trajectories out.

The driver reads the corpus, settles what needs no LM (unreadable inputs, exact and near
duplicates, segments a previous session finished) and hands the rest to an engine: here
`ThreadEngine`, a bounded thread pool in this process (`workers` segments in flight, so
memory stays flat however large the corpus), or `running/ray_engine.RayEngine`, a Ray
Dataset over a cluster. Either way each finished segment comes back to the driver, which
appends it to the journal at once; the tables and the summary are built from the journal
at the end. That makes a run resumable after Ctrl-C or kill -9: rerunning the same
command skips every segment the journal holds, and stage calls of segments that were
in flight come back from DSPy's disk cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import dspy

from gem_synth.programs.adapter import GEMJSONAdapter
from gem_synth.running.corpus import CorpusOptions, Unreadable, content_key, read_corpus, sample
from gem_synth.running.dedup import DEFAULT_THRESHOLD, NearDuplicateIndex
from gem_synth.running.tables import write_tables
from gem_synth.running.journal import Journal, read_entries
from gem_synth.backends.models import ModelPlan, assign_models, cache_hits, configure_cache, flush_cache
from gem_synth.programs.pipeline import GEMPipeline, Stages, run_segment
from gem_synth.running.summary import Summary, summarize
from gem_synth.signatures.records import Segment, SegmentResult

VERSION = "gem-synth 0.1.0"


class RunError(Exception):
    """The run cannot start; the message is one line for the user."""


@dataclass
class RunConfig:
    corpus: str
    out: Path
    corpus_options: CorpusOptions = field(default_factory=CorpusOptions)
    stages: Stages = field(default_factory=Stages)
    workers: int = 4
    adaptive: bool = True  # AIMD on in-flight LM calls below `workers` (backends/concurrency.py)
    limit: int | None = None
    sample: int | None = None
    seed: int = 0
    format: str = "arrow"
    program_path: str | None = None
    track: bool = True
    trace: bool = False
    experiment: str = "gem-synth"
    cache_dir: str | None = None
    progress: bool = True
    near_duplicates: float | None = DEFAULT_THRESHOLD  # MinHash LSH Jaccard threshold; None: exact duplicates only
    engine: str = "local"  # "local": threads in this process; "ray": a Ray Dataset (running/ray_engine.py)
    ray_address: str | None = None  # an existing Ray cluster; None starts a local one
    ray_actors: int | None = None  # Ray worker processes; None: one per CPU of the cluster, at most `workers`


def program_hash(program: dspy.Module, stages: Stages) -> str:
    """Changes when an instruction, a demo or a stage switch changes."""
    state = json.dumps({"state": program.dump_state(), "stages": stages.names()}, sort_keys=True, default=str)
    return hashlib.sha256(state.encode()).hexdigest()[:12]


def build_program(program_path: str | None, stages: Stages) -> dspy.Module:
    """The GEM pipeline, or the synthesizer (`synthesizer`, or a saved synthesizer state),
    with a compiled state loaded when a path is given."""
    from gem_synth.programs.synthesizer import SYNTHESIZER, Synthesizer

    if program_path == SYNTHESIZER:
        return Synthesizer(stages)
    program: dspy.Module = GEMPipeline(stages)
    if program_path:
        path = Path(program_path)
        if not path.is_file():
            raise RunError(f"{path}: no compiled program state there")
        try:
            if "synthesize.predict" in json.loads(path.read_text()):
                program = Synthesizer(stages)
            program.load(str(path))
        except Exception as exc:
            raise RunError(f"{path}: not a program state of this pipeline ({type(exc).__name__}: {exc})") from exc
    return program


def usage_of(tracker, cached_calls: int = 0) -> dict[str, int]:
    """Paid LM calls and their tokens (DSPy's usage tracker), and calls answered from the cache."""
    calls = sum(len(entries) for entries in tracker.usage_data.values())
    totals = tracker.get_total_tokens()
    return {"prompt_tokens": sum(t.get("prompt_tokens") or 0 for t in totals.values()),
            "completion_tokens": sum(t.get("completion_tokens") or 0 for t in totals.values()),
            "lm_calls": calls, "cached_calls": cached_calls}


def _work(program: dspy.Module, segment: Segment, settings: dict[str, Any]) -> dict[str, Any]:
    """One segment through the program under `settings` (a dspy.context): its journal entry
    (`journal_entry`, without the run's meta fields), built where the segment ran. Never
    raises for the segment's own failures: they are results."""
    started = time.perf_counter()
    hits = cache_hits()
    with dspy.context(**settings), dspy.track_usage() as tracker:
        try:
            result = run_segment(program, segment)
        except Exception as exc:  # a failure outside any model's doing: recorded, the run goes on
            reason = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            result = SegmentResult(segment=segment, outcome="error", stage="run", reason=reason)
    return journal_entry(result, usage_of(tracker, cache_hits() - hits), time.perf_counter() - started)


def journal_entry(result: SegmentResult, usage: dict[str, int], seconds: float) -> dict[str, Any]:
    """The journal line of a finished segment (without the run's meta fields)."""
    return {"id": result.segment.id, "outcome": result.outcome, "stage": result.stage,
            "reason": result.reason, "retryable": result.retryable, "usage": usage,
            "seconds": round(seconds, 3), "result": result.model_dump(mode="json")}


def worker_settings(program: dspy.Module, default_lm: dspy.LM, workers: int, adaptive: bool,
                    transient_retries: int) -> tuple[dict[str, Any], Any]:
    """The dspy.context of every segment, and the adaptive limit (None when fixed).

    Set per worker thread, not globally, so a caller's settings are left as they were.
    DSPy keeps the last 10,000 calls (history) and predictions (trace) in global lists,
    even at max_history_size=0: over a large corpus that is memory that grows and O(n)
    pops per call, so both are off. Under `adaptive`, every LM call is held to an
    AIMD limit below `workers` (backends/concurrency.py, by the adapter) and a refused call is retried
    by the stage (`transient_retries` times), not by LiteLLM, whose retries would hide the
    429 from the limit and keep the storm going.
    """
    from dataclasses import replace

    settings: dict[str, Any] = dict(lm=default_lm, adapter=GEMJSONAdapter(), track_usage=True,
                                    disable_history=True, max_trace_size=0)
    if not adaptive:
        return settings, None
    from gem_synth.backends.concurrency import AdaptiveConcurrency

    concurrency = AdaptiveConcurrency(workers)
    settings["adapter"] = GEMJSONAdapter(gate=concurrency)
    for lm in {id(x): x for x in [default_lm, *(p.lm for _, p in program.named_predictors() if p.lm)]}.values():
        lm.num_retries = 0
    if hasattr(program, "stages"):
        program.stages = replace(program.stages, transient_retries=transient_retries)
    return settings, concurrency


class ThreadEngine:
    """Segments through the program on a thread pool in this process, `workers` in flight.

    `results(segments)` pulls segments lazily (so the corpus streams) and yields each
    segment's journal entry (`_work`) as it finishes, in completion order. Our own pool
    replaces `dspy.Parallel`, whose straggler re-submission would pay for a long
    generation twice.
    """

    def __init__(self, program: dspy.Module, settings: dict[str, Any], workers: int):
        self.program, self.settings, self.workers = program, settings, workers

    def results(self, segments: Iterator[Segment]) -> Iterator[dict[str, Any]]:
        # Finished futures land on a queue (O(1) a segment); waiting on the set of in-flight
        # futures instead cost a waiter over all of them per segment (benchmarks/README.md, section 9).
        finished: queue.SimpleQueue[Future] = queue.SimpleQueue()
        in_flight = 0
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="gem")
        interrupted = False
        try:
            for segment in segments:
                if in_flight >= self.workers:
                    yield finished.get().result()
                    in_flight -= 1
                pool.submit(_work, self.program, segment, self.settings).add_done_callback(finished.put)
                in_flight += 1
            for _ in range(in_flight):
                yield finished.get().result()
        except BaseException:  # Ctrl-C: in-flight segments are dropped; their finished calls are in the cache
            interrupted = True
            raise
        finally:
            pool.shutdown(wait=not interrupted, cancel_futures=True)


def _finished_ids(journal: Path) -> set[str]:
    """Segments a rerun must not send to the LM again: all but transient failures."""
    latest: dict[str, bool] = {}
    for entry in read_entries(journal):
        latest[entry["id"]] = bool(entry.get("retryable"))
    return {sid for sid, retry in latest.items() if not retry}


def _items(cfg: RunConfig) -> Iterator[Segment | Unreadable]:
    items: Iterator = read_corpus(cfg.corpus, cfg.corpus_options)
    if cfg.sample:
        items = iter(sample(items, cfg.sample, cfg.seed))
    if cfg.limit:
        items = islice(items, cfg.limit)
    return items


class Runner:
    def __init__(self, cfg: RunConfig, plan: ModelPlan, preflight=None):
        """`preflight()` checks the models; it runs once, just before the first segment is
        sent to them, so a rerun of a finished run makes no LM call at all."""
        self.cfg = cfg
        self.plan = plan
        self.preflight = preflight
        self.out = cfg.out
        self.journal_path = self.out / "journal.jsonl"
        self.manifest_path = self.out / "run.json"
        self.counts: Counter[str] = Counter()
        self.tokens = 0
        self._unclaimed: dict[str, Any] | None = None  # run.json not yet written
        self.bar = None
        self._done: set[str] = set()

    def _manifest(self, phash: str) -> dict[str, Any]:
        return {"version": VERSION, "corpus": str(self.cfg.corpus), "stages": self.cfg.stages.names(),
                "strict_grounding": self.cfg.stages.strict_grounding, "models": self.plan.public(),
                "program_hash": phash, "segment_words": self.cfg.corpus_options.segment_words,
                "text_field": self.cfg.corpus_options.text_field,
                "text_column": self.cfg.corpus_options.text_column, "split": self.cfg.corpus_options.split,
                "near_duplicates": self.cfg.near_duplicates}

    def _check_resume(self, manifest: dict[str, Any]) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {}
        previous = json.loads(self.manifest_path.read_text())
        differing = sorted(k for k, v in manifest.items() if previous.get(k) != v)
        if differing:
            raise RunError(f"{self.out} holds a run with other settings ({', '.join(differing)}); "
                           "use another --out to start a new run")
        return previous

    def run(self) -> Summary:
        cfg = self.cfg
        program = build_program(cfg.program_path, cfg.stages)
        phash = program_hash(program, cfg.stages)
        manifest = self._manifest(phash)
        previous = self._check_resume(manifest)
        configure_cache(cfg.cache_dir)
        default_lm = assign_models(program, self.plan)
        self.settings, self.concurrency = worker_settings(program, default_lm, cfg.workers, cfg.adaptive,
                                                          self.plan.default.num_retries)
        self.out.mkdir(parents=True, exist_ok=True)
        params = {**{k: v for k, v in manifest.items() if k != "models"}, **self.plan.public(), "workers": cfg.workers, "limit": cfg.limit, "sample": cfg.sample, "format": cfg.format}
        meta = {"model": self.plan.default.model, "program_version": f"{VERSION} {type(program).__name__}",
                "program_hash": phash}

        started = time.perf_counter()
        if cfg.track:
            from gem_synth.running.tracking import log_results, tracked_run

            with tracked_run(cfg.experiment, self.out.name, params, previous.get("mlflow_run_id"), cfg.trace) as run:
                manifest["mlflow_run_id"] = run.info.run_id
                self._unclaimed = manifest
                summary = self._loop(program, meta, started)
                log_results(summary.metrics(), self._artifacts(program, summary))
        else:
            self._unclaimed = manifest
            summary = self._loop(program, meta, started)
            self._artifacts(program, summary)
        return summary

    def _engine(self, program: dspy.Module):
        if self.cfg.engine == "ray":
            from gem_synth.running.ray_engine import RayEngine

            return RayEngine(self.cfg, self.plan)
        return ThreadEngine(program, self.settings, self.cfg.workers)

    def _to_send(self, journal: Journal, meta: dict[str, Any], done: set[str]) -> Iterator[Segment]:
        """The corpus, less what needs no LM: unreadable items and duplicates are journalled here,
        segments a previous session finished are skipped. The model check runs just before the
        first segment leaves."""
        seen: dict[str, str] = {}
        self.near = NearDuplicateIndex(self.cfg.near_duplicates) if self.cfg.near_duplicates else None
        for item in _items(self.cfg):
            entry = self._immediate(item, seen, meta)
            if item.id in done:
                continue
            if entry is not None:
                self._record(journal, entry)
                continue
            if self.preflight is not None:
                self.preflight()
                self.preflight = None
            self._claim()
            yield item

    def _loop(self, program: dspy.Module, meta: dict[str, Any], started: float) -> Summary:
        done = _finished_ids(self.journal_path)
        self._done = done
        journal = Journal.open(self.journal_path)
        self.processed = 0
        results = self._engine(program).results(self._to_send(journal, meta, done))
        interrupted = True
        try:
            for entry in results:
                self._record(journal, {**entry, **meta})
            self._claim()  # a run with nothing to send (all done, duplicates, unreadable) is claimed too
            interrupted = False
        finally:
            results.close()  # on Ctrl-C, at once: the engine drops what is in flight
            flush_cache()  # answers of segments still in flight are on disk for the next session
            journal.close()
            if self.bar is not None:
                self.bar.close()
            wall = time.perf_counter() - started
            if self.manifest_path.exists():  # a session that claimed OUT, even one stopped by Ctrl-C
                self._session(wall, interrupted)
        processed = self.processed
        counts = write_tables(self.journal_path, self.out, self.cfg.format)
        summary = summarize(self.journal_path, this_run_wall_seconds=wall, this_run_segments=processed)
        if counts["trajectories"] + counts["rejects"] != summary.segments:
            raise RuntimeError(f"accounting broke: {counts} rows for {summary.segments} segments")
        return summary

    def _session(self, wall: float, interrupted: bool) -> None:
        """One line in sessions.jsonl: the summary's wall time and cost per trajectory add up over
        every session, a session stopped by Ctrl-C included (kill -9 leaves no line)."""
        session = {"finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "wall_seconds": round(wall, 3),
                   "segments": self.processed, "engine": self.cfg.engine}
        if interrupted:
            session["interrupted"] = True
        if self.concurrency is not None and self.concurrency.limits and self.cfg.engine == "local":
            session["concurrency"] = self.concurrency.snapshot()  # how far the endpoint let calls go
        with (self.out / "sessions.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(session) + "\n")

    def _immediate(self, item: Segment | Unreadable, seen: dict[str, str], meta: dict[str, Any]) -> dict | None:
        """Entries needing no LM: unreadable inputs and exact duplicates of earlier segments."""
        if isinstance(item, Unreadable):
            return {"id": item.id, "outcome": "unreadable", "stage": "read", "reason": item.reason,
                    "segment": {"source": item.source, "position": 0, "text": ""}, **meta}
        key = content_key(item.text)
        if key in seen and seen[key] != item.id:
            return {"id": item.id, "outcome": "duplicate", "stage": "read",
                    "reason": f"same text as segment {seen[key]}", "segment": item.model_dump(), **meta}
        seen.setdefault(key, item.id)
        # Every item goes through the index, finished ones too, so a resumed run decides exactly as the first.
        twin = self.near.twin(item.id, item.text) if self.near is not None else None
        if twin is not None:
            return {"id": item.id, "outcome": "duplicate", "stage": "read", "twin": twin[0],
                    "reason": f"near-copy of segment {twin[0]} (estimated Jaccard {twin[1]:.2f} >= "
                              f"{self.cfg.near_duplicates})", "segment": item.model_dump(), **meta}
        return None

    def _claim(self) -> None:
        """Write run.json, which ties OUT to these settings, once the run really starts: after the
        model check passed, or with its first journal entry. A run stopped by a wrong model name
        leaves OUT free for the corrected command."""
        if self._unclaimed is not None:
            self.manifest_path.write_text(json.dumps(self._unclaimed, indent=2))
            self._unclaimed = None
            self.bar = self._progress()  # drawn only now: not over the model check's error line

    def _record(self, journal: Journal, entry: dict[str, Any]) -> None:
        self._claim()
        journal.append(entry)
        self.processed += 1
        self.counts[entry["outcome"]] += 1
        usage = entry.get("usage") or {}
        tokens = usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)
        self.tokens += tokens
        if self.bar is not None:
            self.bar.update(entry["outcome"], tokens)

    def _progress(self):
        """Segments done of the corpus's total (counted without LM work, when cheap), outcomes, tokens, ETA."""
        if not self.cfg.progress:
            return None
        from gem_synth.running.progress import Progress, count

        total = count(_items(self.cfg))
        caps = [n for n in (total, self.cfg.limit, self.cfg.sample) if n]
        total = min(caps) if total is not None or self.cfg.limit or self.cfg.sample else None
        done = min(len(self._done), total) if total is not None else len(self._done)
        return Progress(total, done)

    def _artifacts(self, program: dspy.Module, summary: Summary) -> list[Path]:
        summary_json = self.out / "summary.json"
        summary_json.write_text(json.dumps(summary.to_dict(), indent=2))
        (self.out / "summary.txt").write_text(summary.table() + "\n")
        program_state = self.out / "program.json"
        program.save(str(program_state))
        sample_path = self.out / "sample_trajectories.jsonl"
        with sample_path.open("w") as fh:
            shown = 0
            for entry in read_entries(self.journal_path):
                if entry["outcome"] == "accepted" and shown < 5:
                    fh.write(json.dumps(entry["result"]["record"]) + "\n")
                    shown += 1
        return [summary_json, self.out / "summary.txt", program_state, sample_path]


def run(cfg: RunConfig, plan: ModelPlan, preflight=None) -> Summary:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return Runner(cfg, plan, preflight).run()
