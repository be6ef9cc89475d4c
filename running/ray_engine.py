"""`gem-synth run --engine ray`: the same program over the corpus, as a Ray Dataset.

The driver keeps everything that must see the whole corpus or must be written once:
reading, exact and near duplicates (one MinHash LSH index), skipping what a previous
session finished, the journal, the tables, the summary and the MLflow run. Only the LM
work is spread: the segments left to do go out in windows of `WINDOW` as a Ray Dataset
(one block per segment, so one slow segment holds up nothing else), through
`map_batches` on a pool of `SegmentWorker` actors, each building the program once and
running `ceil(workers / actors)` segments at a time on threads (Ray Data's
`enable_true_multi_threading`). Rows stream back to the driver as segments finish and
are journalled at once, so the guarantees are the local engine's:

- kill -9 of the driver: the journal holds every finished segment; the same command
  skips them, and calls finished by segments in flight come back from the DSPy disk
  cache (shared by path, so on one machine or a shared filesystem).
- a worker process killed: Ray restarts the actor and runs its segments again (actor
  tasks are retried; Ray Data's defaults); calls already answered come from the cache.
- a segment whose worker keeps dying: after Ray's retries the block is given up
  (`max_errored_blocks` is unlimited) and the driver records the segment as an `error`
  with `retryable`, so the run goes on and the next session tries it again.

On an existing cluster (`--ray-address`) every node needs gem-synth installed and, for the
disk cache to help after a failure, the cache directory on a shared path. Provider keys in
the driver's environment (`*_API_KEY`, `*_API_BASE`) are passed to the workers.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice
from typing import Any

from gem_synth.backends.models import flush_cache
from gem_synth.running.runner import RunConfig, RunError, _work, build_program, journal_entry, worker_settings
from gem_synth.signatures.records import Segment, SegmentResult

WINDOW = 4096  # segments per Ray Dataset: bounds the driver's memory; each window starts its actor pool anew
# Tries of a segment whose worker process died, before it is recorded as a retryable error.
WORKER_RETRIES = int(os.environ.get("GEM_SYNTH_RAY_WORKER_RETRIES", "3"))


class SegmentWorker:
    """A Ray Data actor: the program built once, then one segment per call.

    Input batch: `{"segment": [Segment JSON]}` (batch_size 1); output:
    `{"entry": [journal entry JSON]}` (`runner._work`), built here so the driver only parses it. Several calls run at
    once on the actor's threads; the adaptive limit is per actor, its ceiling the actor's
    share of `--workers`.
    """

    def __init__(self, program_path: str | None, stages: Any, plan: Any, cache_dir: str | None, workers: int,
                 adaptive: bool):
        from gem_synth.backends.models import assign_models, configure_cache

        configure_cache(cache_dir)
        self.program = build_program(program_path, stages)
        default_lm = assign_models(self.program, plan)
        self.settings, _ = worker_settings(self.program, default_lm, workers, adaptive, plan.default.num_retries)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        entries = []
        for raw in batch["segment"]:
            entries.append(json.dumps(_work(self.program, Segment.model_validate_json(str(raw)), self.settings)))
        flush_cache()  # Ray ends an actor without a word: its answers are on disk before the row leaves
        return {"entry": entries}


def _forwarded_env() -> dict[str, str]:
    """Provider settings the workers need and a cluster started elsewhere does not have."""
    return {k: v for k, v in os.environ.items()
            if k.endswith(("_API_KEY", "_API_BASE")) or k in ("DSPY_CACHEDIR", "GEM_SYNTH_API_KEY")}


def host_port(address: str | None) -> tuple[str, int] | None:
    """(host, port) of a HOST:PORT cluster address; None for no address and for the forms Ray
    reads itself (auto, ray://...). Raises RunError when the port is not a port number."""
    if not address or "://" in address or ":" not in address:
        return None
    host, _, port = address.rpartition(":")
    if not port.isdigit() or not host or not 0 < int(port) < 65536:
        raise RunError(f"--ray-address {address}: not HOST:PORT")
    return host, int(port)


def _probe(address: str | None, seconds: float = 5.0) -> None:
    """Fail in one line, at once, when nothing listens at a HOST:PORT address: `ray.init` would
    retry a dead address for minutes."""
    where = host_port(address)
    if where is None:
        return
    try:
        socket.create_connection(where, timeout=seconds).close()
    except OSError as exc:
        raise RunError(f"cannot reach Ray at {address}: {exc.strerror or exc}") from None


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """File descriptor 2 to /dev/null for a moment (C++ logging bypasses sys.stderr)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class RayEngine:
    """Segments through the program on a Ray cluster: `results(segments)` yields each
    segment's journal entry as it finishes, like `runner.ThreadEngine`.

    `cfg.ray_address` joins a running cluster ("HOST:PORT" of its head, or "auto");
    None starts a local one for this run. `cfg.ray_actors` worker processes (default: one
    per CPU of the cluster, at most `cfg.workers`) share `cfg.workers` segments in flight.
    Raises RunError (one line) when Ray is not installed or the cluster cannot be reached.
    """

    def __init__(self, cfg: RunConfig, plan: Any):
        self.cfg, self.plan = cfg, plan
        try:
            import ray
        except ImportError as exc:
            raise RunError("--engine ray needs Ray: scripts/setup.sh ray (or pip install 'gem-synth[ray]')") from exc
        self.ray = ray
        self.started_here = False

    def _connect(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        _probe(self.cfg.ray_address)
        # The driver's own Ray core logs errors such as ray#53727 (actor arguments in the object store,
        # which Ray Data's map workers always have) over the progress line; they stay in Ray's session logs.
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
        try:
            with _quiet_stderr():  # Ray's core says at INFO that it read that level, whatever the level
                ray.init(address=self.cfg.ray_address or "local", include_dashboard=False, log_to_driver=False,
                         logging_level="ERROR", runtime_env={"env_vars": _forwarded_env()})
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = self.cfg.ray_address or "a local cluster"
            # Something listens at HOST:PORT (the probe passed) and still refuses us: Ray 2.60's `ray start`
            # turns on token authentication, which its clients must be told of.
            hint = ("; a cluster made by `ray start` wants token authentication: set RAY_AUTH_MODE=token "
                    "(and RAY_AUTH_TOKEN, or its token in ~/.ray/auth_token)"
                    if host_port(self.cfg.ray_address) and "RAY_AUTH_MODE" not in os.environ else "")
            raise RunError(f"cannot reach Ray at {where}: {' '.join(str(exc).split())[:200]}{hint}") from exc
        self.started_here = True
        from ray.data import DataContext

        context = DataContext.get_current()
        context.enable_progress_bars = False  # the run has its own progress line
        context.max_errored_blocks = -1  # a segment whose worker keeps dying is recorded, the run goes on
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # its per-dataset INFO lines would break the progress line

    def _shape(self, segments: int) -> tuple[int, int, float]:
        """(actors, segments per actor, CPUs per actor) for this cluster and a window of `segments`."""
        cpus = max(1, int(self.ray.cluster_resources().get("CPU", 1)))
        actors = max(1, min(self.cfg.ray_actors or cpus, self.cfg.workers, segments))
        return actors, math.ceil(self.cfg.workers / actors), min(1.0, cpus / actors)

    def results(self, segments: Iterator[Segment]) -> Iterator[dict[str, Any]]:
        try:
            while True:
                window = list(islice(segments, WINDOW))
                if not window:
                    return
                self._connect()
                yield from self._window(window)
        finally:
            if self.started_here:
                self.ray.shutdown()

    def _window(self, window: list[Segment]) -> Iterator[dict[str, Any]]:
        import ray.data
        from ray.data import ActorPoolStrategy

        actors, per_actor, cpus = self._shape(len(window))
        dataset = ray.data.from_items([{"segment": s.model_dump_json()} for s in window],
                                      override_num_blocks=len(window))
        cfg = self.cfg
        with warnings.catch_warnings():  # retries have no named parameter yet; pinned below Ray 2.64 (pyproject)
            warnings.simplefilter("ignore", DeprecationWarning)
            finished = dataset.map_batches(
                SegmentWorker, batch_size=1, num_cpus=cpus,
                fn_constructor_kwargs=dict(program_path=cfg.program_path, stages=cfg.stages, plan=self.plan,
                                           cache_dir=cfg.cache_dir, workers=per_actor, adaptive=cfg.adaptive),
                compute=ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=per_actor,
                                          max_concurrent_calls_per_actor=per_actor, enable_true_multi_threading=True),
                max_restarts=-1, max_task_retries=WORKER_RETRIES)
        pending = {s.id: s for s in window}
        for row in finished.iter_rows():
            entry = json.loads(row["entry"])
            if pending.pop(entry["id"], None) is not None:  # a task retried after it had finished: journalled once
                yield entry
        for segment in pending.values():  # its worker died on every try: recorded, tried again next session
            yield journal_entry(SegmentResult(segment=segment, outcome="error", stage="run", retryable=True,
                                              reason=f"the Ray worker running it died {WORKER_RETRIES + 1} times"),
                                {}, 0.0)
