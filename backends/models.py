"""Language models: the embedded offline default, or any DSPy/LiteLLM model string.

Resolution order for each setting: command line, then environment (`GEM_SYNTH_LM`,
`GEM_SYNTH_API_BASE`, `GEM_SYNTH_API_KEY`), then the `[lm]` table of a TOML config
file, then the embedded model. A `[lm.<stage>]` table (or `--filter-lm`, `--judge-lm`)
gives one stage its own model: a cheap filter, a strong generator, a separate judge.

Known traps handled here rather than documented away:
- `openai/NAME` with an `api_base` makes DSPy send `max_completion_tokens`, which
  llama.cpp's server and older OpenAI-compatible servers ignore (a call then runs to
  the context limit): such a model is routed as `hosted_vllm/NAME`, which sends `max_tokens`.
- DSPy's cache key ignores `api_base`, so two servers under one model name would share
  answers: `configure_cache` installs a cache whose key includes the endpoint (never the key).
- LiteLLM fetches a price map from the internet on first use (a 5 s stall offline):
  `LITELLM_LOCAL_MODEL_COST_MAP` is set before it loads.
"""

from __future__ import annotations

import atexit
import os
import queue
import threading
import time
import tomllib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402
from dspy.clients.cache import Cache  # noqa: E402



def _quiet_litellm() -> None:
    """LiteLLM prints "Provider List: https://docs.litellm.ai/docs/providers" (in colour, on stdout)
    before raising for an unknown model; gem-synth says what is wrong in its own one line. Imported
    only for a model DSPy may send through it (a provider's API): the import alone takes 3 s."""
    import litellm

    litellm.suppress_debug_info = True

from gem_synth.backends.embedded import MODEL_NAME, LlamaCppEngine  # noqa: E402

LOCAL = "local"
STAGES = ("filter", "extract", "generate", "refine", "judge")
_REASONING_PREFIXES = ("o1", "o3", "o4", "o5", "gpt-5")


class ModelError(Exception):
    """A model that cannot be used; its message is one line for the user."""


@dataclass(frozen=True)
class ModelSpec:
    model: str = LOCAL
    api_base: str | None = None
    api_key: str | None = field(default=None, repr=False)  # never logged, never sent to MLflow
    temperature: float | None = None
    max_tokens: int | None = None
    num_retries: int = 3
    timeout: float | None = None
    constrain: str = "auto"  # response_format: auto, schema, json or off (programs/adapter.py)

    @property
    def is_local(self) -> bool:
        return self.model in (LOCAL, MODEL_NAME)

    @property
    def is_replay(self) -> bool:
        """`replay/PATH`: answers recorded from a model, replayed offline (backends/replay.py)."""
        return self.model.startswith("replay/")

    def public(self) -> dict[str, Any]:
        """What may be logged: everything but the key."""
        return {k: v for k, v in asdict(self).items() if k != "api_key" and v is not None}


@dataclass(frozen=True)
class ModelPlan:
    """The default model and any per-stage overrides."""

    default: ModelSpec
    stages: dict[str, ModelSpec] = field(default_factory=dict)

    def for_stage(self, stage: str) -> ModelSpec:
        return self.stages.get(stage, self.default)

    def public(self) -> dict[str, Any]:
        out = {f"lm.{k}": v for k, v in self.default.public().items()}
        for stage, spec in self.stages.items():
            out.update({f"lm.{stage}.{k}": v for k, v in spec.public().items()})
        return out


def load_config(path: str | Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"config file {p} does not exist")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"config file {p} is not valid TOML: {exc}") from exc


def plan_models(cli: dict[str, Any] | None = None, config: dict[str, Any] | None = None,
                env: dict[str, str] | None = None) -> ModelPlan:
    """Merge command line, environment and config file into a ModelPlan.

    `cli` keys: model, api_base, api_key, temperature, max_tokens, num_retries, timeout,
    and `<stage>_lm` for per-stage model strings. None means "not given".
    """
    cli = {k: v for k, v in (cli or {}).items() if v is not None}
    env = os.environ if env is None else env
    table = dict((config or {}).get("lm", {}))
    per_stage = {s: table.pop(s) for s in STAGES if isinstance(table.get(s), dict)}
    unknown = set(table) - set(ModelSpec.__dataclass_fields__)
    if unknown:
        raise ModelError(f"unknown [lm] setting(s) {sorted(unknown)} in config")
    from_env = {"model": env.get("GEM_SYNTH_LM"), "api_base": env.get("GEM_SYNTH_API_BASE"),
                "api_key": env.get("GEM_SYNTH_API_KEY")}
    merged = {**table, **{k: v for k, v in from_env.items() if v}, **{k: v for k, v in cli.items()
                                                                       if k in ModelSpec.__dataclass_fields__}}
    default = ModelSpec(**merged)
    stages: dict[str, ModelSpec] = {}
    for stage in STAGES:
        override = dict(per_stage.get(stage, {}))
        if cli.get(f"{stage}_lm"):
            override["model"] = cli[f"{stage}_lm"]
        if override:
            if "model" in override and "api_base" not in override and override["model"] != default.model:
                override["api_base"] = None  # a different model does not inherit the default's server
            stages[stage] = replace(default, **override)
    return ModelPlan(default=default, stages=stages)


# Your own OpenAI-compatible server (vLLM, SGLang, llama.cpp's server, a gateway), declared to
# DSPy's native engine once per process. DSPy already sends `hosted_vllm/` at an api_base
# through this engine with the vLLM preset (max_tokens, not max_completion_tokens); declared, the
# route is resolved once and the call is not priced: a model name DSPy's price table does not
# know was scanned for twice per call (about a third of the client's CPU per call,
# benchmarks/README.md section 9), and a server of your own has no per-token price anyway.
ENDPOINT = "gem-endpoint"


def _declare_endpoint() -> None:
    from dspy._vendor.lm15.access import AccessPolicy, EndpointSupport
    from dspy.lm15 import ProviderDefinition, register_provider

    access = AccessPolicy(provider=ENDPOINT, supports=EndpointSupport(complete=True, stream=True, models=True),
                          auth_modes=("bearer",), base_url="http://localhost:8000/v1")
    register_provider(ProviderDefinition.chat(access, compat="vllm", placeholder_key="none"), metadata_namespaces=())


_declare_endpoint()


def route(spec: ModelSpec) -> str:
    """The model string DSPy gets. At a custom endpoint, `hosted_vllm/NAME` and `openai/NAME`
    (but OpenAI's reasoning models, which want max_completion_tokens) become `gem-endpoint/NAME`:
    DSPy's native engine with the vLLM preset, declared (see ENDPOINT)."""
    model = spec.model
    if spec.api_base and "/" in model:
        prefix, name = model.split("/", 1)
        if prefix == "hosted_vllm" or (prefix == "openai" and not name.startswith(_REASONING_PREFIXES)):
            return f"{ENDPOINT}/{name}"
    return model


_LOCAL_ENGINE: LlamaCppEngine | None = None


def local_engine() -> LlamaCppEngine:
    """One embedded model handle per process, shared by every stage that uses it."""
    global _LOCAL_ENGINE
    if _LOCAL_ENGINE is None:
        _LOCAL_ENGINE = LlamaCppEngine()
    return _LOCAL_ENGINE


def build_lm(spec: ModelSpec, cache: bool = True) -> dspy.LM:
    """The DSPy LM for `spec`, tagged with its decoding mode (`lm.gem_constrain`, read by the adapter).

    Raises ModelError (one line) for an unknown constrain mode, a missing embedded model or
    a model string DSPy refuses.
    """
    from gem_synth.programs.adapter import CONSTRAIN_MODES

    if spec.constrain not in CONSTRAIN_MODES:
        raise ModelError(f"constrain {spec.constrain!r} (--constrain or [lm] constrain): choose one of "
                         f"{', '.join(CONSTRAIN_MODES)}")
    lm = _build_lm(spec, cache)
    lm.gem_constrain = spec.constrain
    return lm


def _build_lm(spec: ModelSpec, cache: bool = True) -> dspy.LM:
    kwargs: dict[str, Any] = {"cache": cache, "num_retries": spec.num_retries}
    if spec.temperature is not None:
        kwargs["temperature"] = spec.temperature
    if spec.is_replay:
        from gem_synth.backends.replay import RecordingError, replay_lm

        try:
            return replay_lm(spec.model.removeprefix("replay/"))
        except RecordingError as exc:
            raise ModelError(str(exc)) from exc
    if spec.is_local:
        try:
            engine = local_engine()
        except FileNotFoundError as exc:
            raise ModelError(str(exc)) from exc
        return dspy.LM(MODEL_NAME, engine=engine, max_tokens=spec.max_tokens or engine.max_tokens, **kwargs)
    if spec.max_tokens is not None:
        kwargs["max_tokens"] = spec.max_tokens
    if spec.api_base:
        kwargs["api_base"] = spec.api_base
    api_key = spec.api_key or (os.environ.get("OPENAI_API_KEY") if spec.api_base else None)
    if spec.api_base:
        kwargs["api_key"] = api_key or "none"  # local servers take any key; LiteLLM insists on one
    elif api_key:
        kwargs["api_key"] = api_key
    if spec.timeout is not None:
        kwargs["timeout"] = spec.timeout
    if not route(spec).startswith(f"{ENDPOINT}/"):
        _quiet_litellm()
    try:
        return dspy.LM(route(spec), **kwargs)
    except (ValueError, TypeError) as exc:
        raise ModelError(f"model {spec.model!r}: {exc}") from exc


def check_lm(spec: ModelSpec) -> None:
    """Fail fast, before any corpus work: a missing key, a wrong model name, an unreachable
    endpoint or a rejected key each become one ModelError line. Costs one tiny call."""
    if spec.is_local or spec.is_replay:
        build_lm(spec)
        return
    if not spec.api_base and not spec.api_key:
        import litellm

        missing = litellm.validate_environment(model=route(spec)).get("missing_keys") or []
        if missing:
            raise ModelError(f"{spec.model} needs {', '.join(missing)} in the environment")
    from dspy.utils.exceptions import LMRateLimitError, LMServerError, LMTimeoutError, LMTransportError

    lm = build_lm(replace(spec, num_retries=0, max_tokens=8), cache=False)
    attempts = max(spec.num_retries, 3) + 1
    for attempt in range(attempts):
        try:
            lm("Reply with the word OK.")
            return
        except (LMRateLimitError, LMServerError, LMTimeoutError, LMTransportError) as exc:  # busy, not wrong
            if isinstance(exc, LMTransportError) and "refused" in str(exc).lower():
                raise ModelError(describe_lm_failure(spec, exc)) from exc
            if attempt == attempts - 1:
                raise ModelError(describe_lm_failure(spec, exc)) from exc
            time.sleep(min(2 ** attempt, 8))
        except Exception as exc:  # a wrong model, key or address: say which, in one line, at once
            raise ModelError(describe_lm_failure(spec, exc)) from exc


def describe_lm_failure(spec: ModelSpec, exc: Exception) -> str:
    where = f" at {spec.api_base}" if spec.api_base else ""
    text = " ".join(str(exc).split())
    lowered = text.lower()
    if any(s in lowered for s in ("connection refused", "connecterror", "connection error", "failed to establish",
                                  "name or service not known", "nodename nor servname", "cannot connect")):
        return f"cannot reach {spec.model}{where}: connection failed"
    if any(s in lowered for s in ("401", "api key", "authentication", "unauthorized", "incorrect api key")):
        return f"{spec.model}{where} rejected the API key (authentication failed)"
    if any(s in lowered for s in ("404", "not found", "does not exist", "unknown model", "llm provider not provided")):
        return f"model {spec.model!r}{where} was not found: check the name and provider prefix"
    return f"{spec.model}{where} failed: {text[:200]}"


_cache_hits = threading.local()


def cache_hits() -> int:
    """LM calls answered from DSPy's cache in this thread so far (they cost nothing and report no usage)."""
    return getattr(_cache_hits, "count", 0)


class OneThreadDisk:
    """DSPy's disk tier (a diskcache.FanoutCache) used from one thread of its own.

    DSPy reads and writes its disk cache from whichever thread makes the LM call: at 64
    calls in flight that is 64 threads, each opening its own SQLite connection to each of
    the 16 shards and contending for their locks. That cost 1.2 to 2.2 ms of client CPU a
    call over a 1,000-call run (a third of it in the kernel), more than everything else
    DSPy does for the call (benchmarks/README.md, section 9). Here one thread owns the
    connections: `set` is queued and written in order; `get` is answered by that thread,
    except for a key the cache cannot hold: the thread first lists the keys on disk (up to
    `PREFILTER_LIMIT`; beyond that every lookup goes to the thread), and a key neither
    listed nor put since is a miss at once, so a fresh run never waits for the thread. A
    read of an answer still queued finds it in DSPy's memory tier, which `put` fills first.
    A process killed with kill -9 loses at most the writes still queued (answers finished
    in the last moment, asked again by the next session); `flush()` waits for the queue to
    empty (the run calls it at its end and on Ctrl-C; a normal exit, at exit).
    """

    PREFILTER_LIMIT = 2_000_000  # keys listed at start (16 characters each kept: about 150 MB at the limit)

    def __init__(self, disk: Any):
        self._disk = disk
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._known: set[str] | None = None  # key prefixes on disk or put since; None: unknown, ask
        self._added: set[str] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, name="gem-cache-disk", daemon=True).start()
        atexit.register(self.flush)  # a normal exit writes what is queued (os._exit and kill -9 do not)

    def _list_keys(self) -> None:
        listed: set[str] = set()
        for n, key in enumerate(self._disk):
            if n >= self.PREFILTER_LIMIT:
                return  # too many to hold: every lookup asks the disk
            listed.add(str(key)[:16])
        with self._lock:
            self._known = listed | self._added

    def _serve(self) -> None:
        try:
            self._list_keys()
        except Exception:  # noqa: BLE001 - without the list, every lookup asks the disk
            pass
        while True:
            op, args, done = self._queue.get()
            try:
                result = getattr(self._disk, op)(*args) if op != "flush" else None
                if done is not None:
                    done.set_result(result)
            except Exception as exc:  # noqa: BLE001 - to the caller; a failed queued write is dropped, as DSPy does
                if done is not None:
                    done.set_exception(exc)

    def _ask(self, op: str, *args: Any, timeout: float | None = None) -> Any:
        from concurrent.futures import Future

        done: Future = Future()
        self._queue.put((op, args, done))
        return done.result(timeout)

    def get(self, key: str, default: Any = None) -> Any:
        known = self._known
        if known is not None and key[:16] not in known:
            return default
        return self._ask("get", key, default)

    def set(self, key: str, value: Any) -> bool:
        with self._lock:
            (self._known if self._known is not None else self._added).add(key[:16])
        self._queue.put(("set", (key, value), None))
        return True

    def delete(self, key: str) -> bool:
        return self._ask("delete", key)

    def __contains__(self, key: str) -> bool:
        return self.get(key, _MISSING) is not _MISSING

    def flush(self, timeout: float | None = 30.0) -> None:
        """Wait until every queued write is on disk (at most `timeout` seconds)."""
        self._ask("flush", timeout=timeout)

    def __getattr__(self, name: str) -> Any:  # anything else DSPy may use (clear, close, volume, ...)
        return getattr(self._disk, name)


_MISSING = object()


class EndpointAwareCache(Cache):
    """DSPy's cache, with the endpoint (`api_base`/`base_url`) in the key; the key never is.

    It also counts hits per thread (`cache_hits()`): DSPy reports no usage for a cached
    answer, so without the count a rerun served from the cache would read as "0 LM calls".
    Its disk tier is used from one thread (`OneThreadDisk`).
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.enable_disk_cache:
            self.disk_cache = OneThreadDisk(self.disk_cache)

    def flush(self) -> None:
        """Every answer put so far is on disk."""
        if isinstance(self.disk_cache, OneThreadDisk):
            self.disk_cache.flush()

    def get(self, request: dict[str, Any], ignored_args_for_cache_key: list[str] | None = None) -> Any:
        found = super().get(request, ignored_args_for_cache_key)
        if found is not None:
            _cache_hits.count = cache_hits() + 1
        return found

    def cache_key(self, request: dict[str, Any], ignored_args_for_cache_key: list[str] | None = None) -> str:
        ignored = [k for k in (ignored_args_for_cache_key or []) if k not in ("api_base", "base_url")]
        return super().cache_key(request, ignored)


def configure_cache(disk_cache_dir: str | None = None, memory_max_entries: int = 256) -> None:
    """DSPy's disk cache (resume and reruns cost no LM call) with a small memory LRU,
    so memory stays flat over a long corpus."""
    from dspy.clients import DISK_CACHE_DIR, DISK_CACHE_LIMIT

    cache = EndpointAwareCache(True, True, disk_cache_dir or os.environ.get("DSPY_CACHEDIR") or DISK_CACHE_DIR,
                               DISK_CACHE_LIMIT, memory_max_entries)
    with dspy._cache_lock:
        dspy.cache = cache


def assign_models(program: dspy.Module, plan: ModelPlan, cache: bool = True) -> dspy.LM:
    """Give each stage its LM; returns the default LM (for `dspy.configure`)."""
    built: dict[ModelSpec, dspy.LM] = {}

    def lm_for(spec: ModelSpec) -> dspy.LM:
        if spec not in built:
            built[spec] = build_lm(spec, cache=cache)
        return built[spec]

    default = lm_for(plan.default)
    for stage, spec in plan.stages.items():
        module = getattr(program, stage, None)
        if module is not None:
            for _, predictor in module.named_predictors():
                predictor.lm = lm_for(spec)
    return default


def flush_cache() -> None:
    """Wait for DSPy's cache to write what it holds (a no-op for a cache that is not ours)."""
    flush = getattr(dspy.cache, "flush", None)
    if callable(flush):
        flush()
