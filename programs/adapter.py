"""The DSPy adapter gem-synth talks to models through: DSPy's JSONAdapter, with JSON's words for
types and a JSON Schema `response_format` for every backend that can decode against one.

Words: DSPy's JSONAdapter describes a boolean field as "must be formatted as a valid
Python bool" and "must be True or False": in JSON that is `true` / `false`, and the
models answering our requests reported the contradiction.

Constrained decoding: the output fields' JSON Schema (for a conversation, the per-segment
one of `signatures.conversation.conversation_over`) goes out as
`{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`. DSPy sends it only
to models its capability table knows, so an open model behind `hosted_vllm/` or any
OpenAI-compatible server got none; here the decision is `decoding_mode(lm)`:
- `schema`: the embedded llama.cpp engine (the schema becomes a grammar), any model
  served at an `api_base` (vLLM, SGLang, llama.cpp's server, Ollama, LM Studio all take
  a JSON Schema), and providers DSPy knows to take one. `strict` is true when the schema
  is closed (every object lists its properties), the form OpenAI's strict mode takes;
  a schema with a free-form object (the synthesizer's calls, an `object` parameter) is
  sent with `strict: false`, which such servers still follow and OpenAI treats as a guide.
- `json`: providers that take only `{"type": "json_object"}`.
- `off`: nothing is sent; the schema is still in the prompt and the answer is parsed
  against it (a call to an unknown tool then fails to parse and is asked again).
A model's mode can be forced with `--constrain` (ModelSpec.constrain).
"""

from __future__ import annotations

import functools
import typing

import dspy
import pydantic
from dspy.clients.legacy_requests import _strict_json_schema  # the OpenAI SDK's strict-mode rules, kept by DSPy
from pydantic import BaseModel

CONSTRAIN_MODES = ("auto", "schema", "json", "off")


def decoding_mode(lm: typing.Any) -> str:
    """`schema`, `json` or `off` for this LM: its forced mode (`lm.gem_constrain`), else what it supports."""
    forced = getattr(lm, "gem_constrain", "auto")
    if forced != "auto":
        return forced
    model = str(getattr(lm, "model", ""))
    kwargs = getattr(lm, "kwargs", {}) or {}
    if kwargs.get("api_base") or model.startswith("hosted_vllm/"):  # first: asking DSPy scans its model table
        return "schema"
    try:
        if getattr(lm, "supports_response_schema", False):
            return "schema"
    except Exception:  # noqa: BLE001 - DSPy raises for a provider it has no capability table for
        pass
    try:
        if "response_format" in lm.supported_params:
            return "json"
    except Exception:  # noqa: BLE001
        pass
    return "off"


def _closed(schema: typing.Any) -> bool:
    """True when every object in the schema lists its properties (no free-form mapping)."""
    if isinstance(schema, list):
        return all(_closed(s) for s in schema)
    if not isinstance(schema, dict):
        return True
    if schema.get("type") == "object" and "properties" not in schema:
        return False
    return all(_closed(v) for k, v in schema.items() if isinstance(v, (dict, list)) and k != "enum")


@functools.lru_cache(maxsize=256)
def output_schema(signature: type[dspy.Signature]) -> dict:
    """The `response_format` for a signature's output fields: `{"type": "json_schema", "json_schema": {...}}`.

    Built once per signature class (a pydantic model and its JSON Schema cost more than the
    rest of a call's formatting); the dict is shared, so callers must not change it.
    Raises pydantic's schema errors for a type with no JSON Schema.
    """
    fields = {name: (field.annotation, ...) for name, field in signature.output_fields.items()}
    model = pydantic.create_model(f"{signature.__name__}Output", __config__=pydantic.ConfigDict(extra="forbid"),
                                  **fields)
    schema = model.model_json_schema()
    strict = _closed(schema)
    if strict:
        schema = _strict_json_schema(schema)
    return {"type": "json_schema", "json_schema": {"name": f"{signature.__name__}Output"[:64], "schema": schema,
                                                   "strict": strict}}


def json_kind(annotation: typing.Any) -> str:
    """How a field's value is written in JSON, in words, e.g. `a JSON boolean: true or false`."""
    origin = typing.get_origin(annotation)
    if annotation is bool:
        return "a JSON boolean: true or false"
    if annotation is int:
        return "a JSON integer"
    if annotation is float:
        return "a JSON number"
    if origin is typing.Literal:
        return "a JSON string, exactly one of the values listed for it"
    if origin in (list, tuple, set):
        return "a JSON array that follows the field's schema"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "a JSON object that follows the field's schema"
    return "a JSON value that follows the field's schema"


class GEMJSONAdapter(dspy.JSONAdapter):
    """JSONAdapter whose field instructions use JSON's types (`true`/`false`), never Python's, and whose
    `response_format` is chosen by `decoding_mode` rather than DSPy's capability table.

    `gate`, when given, is any object whose `held(lm)` context manager admits one LM call
    (the run's adaptive concurrency, backends/concurrency.py): every call this adapter makes
    is held by it, with no DSPy callback (which would wrap every module call in the program).
    Synchronous calls only: the run loop's threads wait for a slot (`acall` is not held).
    """

    def __init__(self, *args: typing.Any, gate: typing.Any = None, **kwargs: typing.Any):
        super().__init__(*args, **kwargs)
        self.gate = gate

    def __call__(self, lm, lm_kwargs, signature, demos, inputs):
        if self.gate is None:
            return super().__call__(lm, lm_kwargs, signature, demos, inputs)
        with self.gate.held(lm):
            return super().__call__(lm, lm_kwargs, signature, demos, inputs)

    def _prepare_response_format(self, lm, lm_kwargs, signature):
        mode = decoding_mode(lm)
        if mode == "off":
            lm_kwargs.pop("response_format", None)
            return
        if mode == "json":
            lm_kwargs["response_format"] = {"type": "json_object"}
            return
        try:
            lm_kwargs["response_format"] = output_schema(signature)
        except (pydantic.PydanticInvalidForJsonSchema, pydantic.PydanticSchemaGenerationError, ValueError):
            lm_kwargs["response_format"] = {"type": "json_object"}

    def format_field_structure(self, signature: type[dspy.Signature]) -> str:
        return super().format_field_structure(signature).replace(
            "must be True or False", "must be a JSON boolean: true or false")

    def user_message_output_requirements(self, signature: type[dspy.Signature]) -> str:
        fields = []
        for name, field in signature.output_fields.items():
            kind = "" if field.annotation is str else f" ({json_kind(field.annotation)})"
            fields.append(f"`{name}`{kind}")
        return "Respond with a JSON object in the following order of fields: " + ", then ".join(fields) + "."
