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
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any

from gem_synth.programs.validator import errors, string_arguments, validate
from gem_synth.signatures.chat import message_text

FORMATS = ("openai", "hermes", "sharegpt", "gem-sft")
SYNTHESIS_INSTRUCTION_KEY = "synthesis_instruction"


class ExportError(ValueError):
    """A record that cannot be expressed in the target format."""


def canonical(row: dict[str, Any]) -> dict[str, Any]:
    """A trajectories-table row (or any {tools, messages} record) as clean OpenAI JSON.

    `tools` parsed when it is a JSON string, keys Arrow filled with None dropped (assistant
    `content` kept), tool-call `arguments` given as a JSON object encoded as a JSON string
    (validate reports that as C007). Anything malformed is left as it is for the validator
    to report: this never raises.
    """
    tools = row.get("tools") if isinstance(row, dict) else None
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except json.JSONDecodeError:
            pass
    raw_messages = row.get("messages") if isinstance(row, dict) else None
    if not isinstance(raw_messages, list):
        return {"tools": tools if tools is not None else [], "messages": raw_messages}
    messages = []
    for m in raw_messages:
        if not isinstance(m, dict):
            messages.append(m)
            continue
        clean = {k: v for k, v in m.items() if v is not None or (k == "content" and m.get("role") == "assistant")}
        if not clean.get("tool_calls"):
            clean.pop("tool_calls", None)
        messages.append(string_arguments(clean)[0])
    return {"tools": tools if tools is not None else [], "messages": messages}


def _object_arguments(row: Any) -> int:
    """How many tool calls of a raw record give `arguments` as a JSON object rather than a string."""
    messages = row.get("messages") if isinstance(row, dict) else None
    return sum(len(string_arguments(m)[1]) for m in (messages if isinstance(messages, list) else []))


def _results_in_call_order(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each run of tool results reordered to follow its assistant turn's calls, paired by `tool_call_id`.

    Positional forms (hermes `<tool_response>`s, sharegpt observations, templates that pair
    by position) would otherwise bind a result that arrived out of order to the wrong call.
    """
    out: list[dict[str, Any]] = []
    order: dict[str, int] = {}
    i = 0
    while i < len(messages):
        m = messages[i]
        if m.get("role") != "tool":
            if m.get("tool_calls"):
                order = {c.get("id"): k for k, c in enumerate(m["tool_calls"])}
            out.append(m)
            i += 1
            continue
        j = i
        while j < len(messages) and messages[j].get("role") == "tool":
            j += 1
        out += sorted(messages[i:j], key=lambda t: order.get(t.get("tool_call_id"), len(order)))
        i = j
    return out


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
                 split_parallel: bool = False, empty_content: bool = False,
                 text_beside_calls: str = "keep") -> dict[str, Any]:
    """The record in the argument, id and call-count form a chat template expects.

    arguments: "string" (OpenAI, Qwen3, Hermes 3) or "dict" (Qwen2.5, Llama 3.1, Mistral, gpt-oss).
    ids: "keep", or "mistral" for 9-character alphanumeric ids (consistent across a call and its result).
    split_parallel: one call per assistant turn (Llama 3.1 refuses parallel calls).
    empty_content: "" instead of null beside tool calls (Qwen3's template tests `in content`).
    text_beside_calls: "keep", or "drop" for templates that show either an assistant turn's text or
    its calls, never both (DeepSeek-R1's distilled Llama renders the text and loses the calls).
    """
    out = json.loads(json.dumps(canonical(record)))
    if text_beside_calls == "drop":
        for m in out["messages"]:
            if m.get("tool_calls"):
                m["content"] = None
    out["messages"] = _results_in_call_order(out["messages"])  # templates pair results by position
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
    """The turn's calls as {"name", "arguments": dict} (arguments already validated as a JSON object)."""
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
    """Hermes text turns; a record without a system turn gets the tool header as its own system turn.
    Tool results follow their calls' order (paired by id); text beside a call is kept before it."""
    record = canonical(record)
    tools = "\n".join(json.dumps(t, ensure_ascii=False) for t in record["tools"])
    header = HERMES_SYSTEM.format(tools=tools)
    messages = [] if record["messages"] and record["messages"][0].get("role") == "system" else \
        [{"role": "system", "content": header}]
    for m in _results_in_call_order(record["messages"]):
        role, content = m["role"], message_text(m)
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


_HERMES_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.S)


def hermes_calls(text: str) -> list[dict[str, Any]]:
    """Calls read back from Hermes text, the way Hermes tool parsers (vLLM's, for one) read them."""
    return [json.loads(m) for m in _HERMES_CALL.findall(text)]


SHAREGPT_TEXT_DROPPED = "sharegpt has no form for text beside a tool call (LLaMA-Factory reads a function_call " \
    "turn as the calls' JSON only): the text was dropped"


def to_sharegpt(record: dict[str, Any], warnings: list[str] | None = None) -> dict[str, Any]:
    """ShareGPT `conversations` as LLaMA-Factory's sharegpt converter reads them.

    human / function_call / observation / gpt turns, `system` and `tools` (a JSON string).
    The results of one turn's calls share one observation, in call order (paired by id),
    as a JSON list when there are several. Text beside a call has no form there: it is
    dropped and `SHAREGPT_TEXT_DROPPED` is appended to `warnings` (counted by the export).
    Consecutive assistant text turns are joined. Raises ExportError when the turns cannot
    alternate as the converter requires.
    """
    record = canonical(record)
    system = ""
    turns: list[dict[str, str]] = []
    messages = _results_in_call_order(record["messages"])
    for is_tool, group in groupby(messages, key=lambda m: m["role"] == "tool"):
        group = list(group)
        if is_tool:
            contents = [message_text(m) for m in group]
            turns.append({"from": "observation", "value": contents[0] if len(contents) == 1 else
                          json.dumps(contents, ensure_ascii=False)})
            continue
        for m in group:
            role, content = m["role"], message_text(m)
            if role == "system":
                system = content
            elif role == "user":
                turns.append({"from": "human", "value": content})
            elif m.get("tool_calls"):
                if content.strip() and warnings is not None:
                    warnings.append(SHAREGPT_TEXT_DROPPED)
                calls = _calls(m)
                turns.append({"from": "function_call",
                              "value": json.dumps(calls[0] if len(calls) == 1 else calls, ensure_ascii=False)})
            elif turns and turns[-1]["from"] == "gpt":  # two assistant text turns in a row: one gpt turn
                turns[-1]["value"] += "\n\n" + content
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
              "patterns": list(row.get("patterns_verified") or row.get("patterns") or [])}
    return {"messages": sft_messages(row["text"], answer, instruction)}


C007_WRITTEN = "C007: tool-call arguments given as a JSON object were written as a JSON string"
COLUMNS = {"openai": ("id", "messages", "tools"), "hermes": ("id", "messages"),
           "sharegpt": ("id", "conversations", "system", "tools"), "gem-sft": ("id", "messages")}


def export_rows(rows: Iterable[dict[str, Any]], fmt: str, instruction: str = ""
                ) -> Iterator[tuple[dict, str | None, list[str]]]:
    """(exported row, None, warnings) per exportable record, or ({"id"}, reason, []) for one that is not.

    Records are checked with the `openai` rule set (what any consumer needs; a foreign
    dataset without system turns exports too). Warnings say what the export changed:
    arguments given as objects written as strings (C007), text beside a call dropped
    (sharegpt). Never raises for a malformed record.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    for n, row in enumerate(rows):
        rid = str(row.get("id", f"record {n}")) if isinstance(row, dict) else f"record {n}"
        if isinstance(row, dict) and "__unreadable__" in row:
            yield {"id": rid}, row["__unreadable__"], []
            continue
        record = canonical(row) if isinstance(row, dict) else row
        found = validate(record, grounding=False, rules="openai")
        broken = errors(found)
        if broken:
            yield {"id": rid}, "; ".join(v.line() for v in broken[:3]), []
            continue
        warnings = [f"{v.code}: {v.rule}" for v in found if v.severity == "warning"]
        warnings += [C007_WRITTEN] * _object_arguments(row)
        if fmt == "gem-sft" and not (isinstance(row, dict) and isinstance(row.get("text"), str)):
            yield {"id": rid}, "gem-sft needs the source text: export a gem-synth trajectories table", []
            continue
        try:
            if fmt == "openai":
                out = {"messages": record["messages"], "tools": json.dumps(record["tools"], ensure_ascii=False)}
            elif fmt == "hermes":
                out = to_hermes(record)
            elif fmt == "sharegpt":
                out = to_sharegpt(record, warnings)
            else:
                out = to_gem_sft(row, record, instruction)
        except ExportError as exc:
            yield {"id": rid}, str(exc), []
            continue
        yield {"id": rid, **out}, None, warnings


@dataclass
class ExportReport:
    """What an export wrote, left out (with reasons) and changed (warnings counted by kind)."""

    written: int = 0
    left_out: list[str] = field(default_factory=list)
    warnings: Counter = field(default_factory=Counter)

    def lines(self, fmt: str, out: Path) -> list[str]:
        head = f"{fmt}: {self.written} {'trajectory' if self.written == 1 else 'trajectories'} -> {out}"
        if self.left_out:
            head += f" ({len(self.left_out)} left out)"
        if not self.written:
            head += " (nothing to write: an empty export was written)"
        lines = [head] + [f"  warning ({n}x): {w}" for w, n in self.warnings.most_common()]
        return lines


def write_export(rows: Iterable[dict[str, Any]], fmt: str, out: Path, instruction: str = "") -> ExportReport:
    """Write an export as JSONL (`out` ends in .jsonl) or a HF dataset folder; an empty one when nothing fits."""
    good: list[dict[str, Any]] = []
    report = ExportReport()
    for exported, reason, warnings in export_rows(rows, fmt, instruction):
        if reason is None:
            good.append(exported)
            report.warnings.update(warnings)
        else:
            report.left_out.append(f"{exported['id']}: {reason}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if str(out).endswith(".jsonl"):
        with out.open("w", encoding="utf-8") as fh:
            for row in good:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    else:
        from gem_synth.running.tables import save_rows

        save_rows(good, out, COLUMNS[fmt])
    report.written = len(good)
    return report


def load_trajectories(ref: str | Path, split: str = "train"):
    """Records to export: a run folder (any table format), a saved dataset, JSON/JSONL/Parquet, or a Hub name."""
    from gem_synth.running.tables import read_records

    return read_records(ref, split)
