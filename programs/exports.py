"""Exports of the canonical OpenAI-format trajectories to the forms trainers consume.

- `openai`: `messages` + `tools` as TRL's SFTTrainer takes them. `tools` is a JSON string
  and tool-call arguments are JSON strings: Arrow would otherwise unify every tool's
  argument struct across rows. `for_template` gives the per-template variants: dict
  arguments (Qwen2.5, Mistral and gpt-oss templates double-encode a string) and
  9-character alphanumeric call ids (Mistral's templates require them), one call per
  turn (Llama 3.1) and "" rather than null content beside calls (Qwen3).
- `hermes`: the Hermes tool-call text format GEM trained with: tools in `<tools>` in the
  system prompt, calls as `<tool_call>{"name", "arguments"}</tool_call>` in assistant text,
  results as `<tool_response>` in tool turns.
- `sharegpt`: `conversations` of human / gpt / function_call / observation turns plus
  `system` and `tools`, as APIGen-MT and xLAM publish (and LLaMA-Factory reads).
- `gem-sft`: the Trajectory Synthesizer's fine-tuning chats (text in, tools and
  trajectory out as one JSON answer).
A record that breaks a GEM rule is not exported: it is reported with its violations.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from itertools import groupby
from pathlib import Path
from typing import Any

from programs.validator import errors, validate

FORMATS = ("openai", "hermes", "sharegpt", "gem-sft")
SYNTHESIS_INSTRUCTION_KEY = "synthesis_instruction"


class ExportError(ValueError):
    """A record that cannot be expressed in the target format."""


def canonical(row: dict[str, Any]) -> dict[str, Any]:
    """A trajectories-table row (or any {tools, messages} record) as clean OpenAI JSON:
    `tools` parsed, keys Arrow filled with None dropped (assistant `content` kept)."""
    tools = row["tools"]
    if isinstance(tools, str):
        tools = json.loads(tools)
    messages = []
    for m in row["messages"]:
        clean = {k: v for k, v in m.items() if v is not None or (k == "content" and m.get("role") == "assistant")}
        if not clean.get("tool_calls"):
            clean.pop("tool_calls", None)
        messages.append(clean)
    return {"tools": tools, "messages": messages}


def _mistral_id(call_id: str) -> str:
    return hashlib.sha256(call_id.encode()).hexdigest()[:9]


def _split_parallel(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """assistant(a, b), tool(a), tool(b) -> assistant(a), tool(a), assistant(b), tool(b)."""
    results = {m["tool_call_id"]: m for m in messages if m["role"] == "tool"}
    placed: set[str] = set()
    out: list[dict[str, Any]] = []
    for m in messages:
        calls = m.get("tool_calls") or []
        if m["role"] == "tool":
            if m["tool_call_id"] not in placed:
                out.append(m)
        elif len(calls) > 1:
            for i, call in enumerate(calls):
                out.append({**m, "content": m.get("content") if i == 0 else None, "tool_calls": [call]})
                if call["id"] in results:
                    out.append(results[call["id"]])
                    placed.add(call["id"])
        else:
            out.append(m)
    return out


def for_template(record: dict[str, Any], arguments: str = "string", ids: str = "keep",
                 split_parallel: bool = False, empty_content: bool = False) -> dict[str, Any]:
    """The record in the argument, id and call-count form a chat template expects.

    arguments: "string" (OpenAI, Qwen3, Hermes 3) or "dict" (Qwen2.5, Llama 3.1, Mistral, gpt-oss).
    ids: "keep", or "mistral" for 9-character alphanumeric ids (consistent across a call and its result).
    split_parallel: one call per assistant turn (Llama 3.1 refuses parallel calls).
    empty_content: "" instead of null beside tool calls (Qwen3's template tests `in content`).
    """
    out = json.loads(json.dumps(record))
    if split_parallel:
        out["messages"] = _split_parallel(out["messages"])
    if empty_content:
        for m in out["messages"]:
            if m.get("content") is None:
                m["content"] = ""
    for m in out["messages"]:
        for call in m.get("tool_calls") or []:
            if arguments == "dict":
                call["function"]["arguments"] = json.loads(call["function"]["arguments"])
            if ids == "mistral":
                call["id"] = _mistral_id(call["id"])
        if ids == "mistral" and m.get("role") == "tool":
            m["tool_call_id"] = _mistral_id(m["tool_call_id"])
    return out


def _calls(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])}
            for c in message.get("tool_calls") or []]


HERMES_SYSTEM = (
    "You are a function calling AI model. You are provided with function signatures within <tools></tools> XML "
    "tags. You may call one or more functions to assist with the user query. Don't make assumptions about what "
    "values to plug into functions. Here are the available tools: <tools>\n{tools}\n</tools>\n"
    "For each function call return a json object with function name and arguments within <tool_call></tool_call> "
    "XML tags as follows:\n<tool_call>\n{{\"name\": <function-name>, \"arguments\": <args-dict>}}\n</tool_call>"
)


def to_hermes(record: dict[str, Any]) -> dict[str, Any]:
    tools = "\n".join(json.dumps(t, ensure_ascii=False) for t in record["tools"])
    header = HERMES_SYSTEM.format(tools=tools)
    messages = []
    for m in record["messages"]:
        role, content = m["role"], m.get("content") or ""
        if role == "system":
            messages.append({"role": "system", "content": f"{header}\n\n{content}"})
        elif role == "assistant":
            calls = "\n".join(f"<tool_call>\n{json.dumps(c, ensure_ascii=False)}\n</tool_call>" for c in _calls(m))
            messages.append({"role": "assistant", "content": "\n".join(p for p in (content, calls) if p)})
        elif role == "tool":
            messages.append({"role": "tool", "content": f"<tool_response>\n{content}\n</tool_response>"})
        else:
            messages.append({"role": role, "content": content})
    return {"messages": messages}


_HERMES_CALL = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.S)


def hermes_calls(text: str) -> list[dict[str, Any]]:
    """Calls read back from Hermes text, the way Hermes tool parsers (vLLM's, for one) read them."""
    return [json.loads(m) for m in _HERMES_CALL.findall(text)]


def to_sharegpt(record: dict[str, Any]) -> dict[str, Any]:
    system = ""
    turns: list[dict[str, str]] = []
    for is_tool, group in groupby(record["messages"], key=lambda m: m["role"] == "tool"):
        group = list(group)
        if is_tool:  # the results of one turn's calls share one observation, as a list if several
            contents = [m.get("content") or "" for m in group]
            turns.append({"from": "observation", "value": contents[0] if len(contents) == 1 else
                          json.dumps(contents, ensure_ascii=False)})
            continue
        for m in group:
            role, content = m["role"], m.get("content") or ""
            if role == "system":
                system = content
            elif role == "user":
                turns.append({"from": "human", "value": content})
            elif m.get("tool_calls"):
                if content:
                    raise ExportError("an assistant turn with both text and tool calls has no ShareGPT form")
                calls = _calls(m)
                turns.append({"from": "function_call",
                              "value": json.dumps(calls[0] if len(calls) == 1 else calls, ensure_ascii=False)})
            else:
                turns.append({"from": "gpt", "value": content})
    for i, turn in enumerate(turns):  # the alternation ShareGPT readers (LLaMA-Factory) enforce
        expected = ("human", "observation") if i % 2 == 0 else ("gpt", "function_call")
        if turn["from"] not in expected:
            raise ExportError(f"turn {i} is `{turn['from']}` where ShareGPT needs one of {expected}")
    return {"conversations": turns, "system": system, "tools": json.dumps(record["tools"], ensure_ascii=False)}


def sft_messages(text: str, answer: dict[str, Any], instruction: str) -> list[dict[str, str]]:
    """The synthesizer's chat: instruction, text, and the answer as one JSON object
    {"is_procedural", "tools", "messages", "patterns"} (tools and messages in OpenAI format)."""
    return [{"role": "system", "content": instruction}, {"role": "user", "content": text},
            {"role": "assistant", "content": json.dumps(answer, ensure_ascii=False)}]


def parse_sft_answer(content: str) -> dict[str, Any]:
    """The inverse of the assistant turn: how a fine-tuned synthesizer's output is read back."""
    answer = json.loads(content)
    if not isinstance(answer, dict) or not {"is_procedural", "tools", "messages"} <= set(answer):
        raise ValueError("not a synthesizer answer: needs is_procedural, tools and messages")
    return answer


def to_gem_sft(row: dict[str, Any], record: dict[str, Any], instruction: str) -> dict[str, Any]:
    answer = {"is_procedural": True, "tools": record["tools"], "messages": record["messages"],
              "patterns": list(row.get("patterns") or [])}
    return {"messages": sft_messages(row["text"], answer, instruction)}


def export_rows(rows: Iterable[dict[str, Any]], fmt: str, instruction: str = "") -> Iterator[tuple[dict, str | None]]:
    """(exported row, None) per exportable record, or ({"id"}, reason) for one that is not."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    for row in rows:
        rid = row.get("id", "")
        record = canonical(row)
        broken = errors(validate(record, grounding=False))
        if broken:
            yield {"id": rid}, "; ".join(v.line() for v in broken[:3])
            continue
        try:
            if fmt == "openai":
                out = {"messages": record["messages"], "tools": json.dumps(record["tools"], ensure_ascii=False)}
            elif fmt == "hermes":
                out = to_hermes(record)
            elif fmt == "sharegpt":
                out = to_sharegpt(record)
            else:
                out = to_gem_sft(row, record, instruction)
        except ExportError as exc:
            yield {"id": rid}, str(exc)
            continue
        yield {"id": rid, **out}, None


def write_export(rows: Iterable[dict[str, Any]], fmt: str, out: Path, instruction: str = "") -> tuple[int, list[str]]:
    """Write an export as JSONL (`out` ends in .jsonl) or a HF dataset folder; returns (written, problems)."""
    good, problems = [], []
    for exported, reason in export_rows(rows, fmt, instruction):
        if reason is None:
            good.append(exported)
        else:
            problems.append(f"{exported['id']}: {reason}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if str(out).endswith(".jsonl"):
        with out.open("w", encoding="utf-8") as fh:
            for row in good:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    else:
        from programs.dataset_io import save_rows

        save_rows(good, out)
    return len(good), problems


def load_trajectories(ref: str | Path):
    """The trajectories table of a run folder, or a saved trajectories dataset itself."""
    import datasets

    path = Path(ref)
    if (path / "trajectories").is_dir():
        path = path / "trajectories"
    if not path.is_dir():
        raise FileNotFoundError(f"{ref}: not a gem-synth run folder or trajectories dataset")
    return datasets.load_from_disk(str(path))
