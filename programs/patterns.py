"""GEM's patterns, verified from the transcript rather than taken from the model's claim.

Every strong-model trajectory claimed 8 to 11 patterns; a claim costs nothing, and a
metric that rewards claims teaches an optimizer to list more names. A claimed pattern
counts only when the conversation shows it:

- deterministic detectors, where the transcript can show it without judgement
  (GEM section 3.2's definitions, `signatures/conventions.py`):
  `error_recovery` (a tool error, then a successful tool result later),
  `clarification` / `clarification_not_inferable` (the assistant asks the user a question
  and acts on the answer with a tool call), `long_noisy_context` (a tool result listing
  at least LONG_LIST records), `multi_hop_reasoning` (a call whose argument value first
  appeared in an earlier tool result, not in anything the user or system said);
- the judge, for the patterns that need judgement (rule conflicts, pitfalls avoided,
  inferable ambiguity, honest refusals, several constraints in one turn, steps only the
  user can do): `HallucinationJudge.patterns_exercised`, with message indices.

`verify(claimed, messages, judge)` gives the verified subset, with evidence.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from gem_synth.programs.validator import leaves
from gem_synth.signatures.chat import message_text

LONG_LIST = 5  # records in one tool result that make a long, noisy context

Evidence = dict[str, list[int]]  # pattern -> message indices that show it


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return None


def is_error_result(text: str) -> bool:
    """A tool result that reports a failure: {"error": ...}, a failed status, or text starting with Error."""
    value = _json(text)
    if isinstance(value, dict):
        status = str(value.get("status", "")).lower()
        return "error" in value or value.get("success") is False or status in ("error", "failed", "failure")
    return text.strip().lower().startswith(("error", "failed"))


def error_recovery(messages: list[dict[str, Any]]) -> list[int]:
    """A tool error followed, later, by a tool result that succeeds."""
    results = [(i, is_error_result(message_text(m))) for i, m in enumerate(messages) if m.get("role") == "tool"]
    for k, (i, failed) in enumerate(results):
        if failed:
            later = next((j for j, bad in results[k + 1:] if not bad), None)
            if later is not None:
                return [i, later]
    return []


def clarification(messages: list[dict[str, Any]]) -> list[int]:
    """The assistant asks the user a question, the user answers, and a tool call follows."""
    for i, m in enumerate(messages[:-2]):
        if m.get("role") == "assistant" and not m.get("tool_calls") and "?" in message_text(m) \
                and messages[i + 1].get("role") == "user":
            call = next((j for j in range(i + 2, len(messages)) if messages[j].get("tool_calls")), None)
            if call is not None:
                return [i, i + 1, call]
    return []


def _records(value: Any) -> int:
    """The longest list of objects anywhere in a JSON value."""
    if isinstance(value, list):
        own = sum(isinstance(v, dict) for v in value)
        return max([own, *(_records(v) for v in value)])
    if isinstance(value, dict):
        return max([0, *(_records(v) for v in value.values())])
    return 0


def long_noisy_context(messages: list[dict[str, Any]]) -> list[int]:
    """A tool result that lists at least LONG_LIST records."""
    return next(([i] for i, m in enumerate(messages)
                 if m.get("role") == "tool" and _records(_json(message_text(m))) >= LONG_LIST), [])




def _leaf_strings(value: Any) -> list[str]:
    """Argument values of three characters or more, as text (booleans and nulls carry no hop)."""
    return [str(v) for v in leaves(value) if isinstance(v, (str, int, float)) and not isinstance(v, bool)
            and len(str(v)) >= 3]


def multi_hop_reasoning(messages: list[dict[str, Any]]) -> list[int]:
    """A call that uses a value only an earlier tool result gave (an id found, then acted on)."""
    said, returned = "", ""
    for i, m in enumerate(messages):
        role = m.get("role")
        if role in ("system", "user"):
            said += "\n" + message_text(m).casefold()
        elif role == "tool":
            returned += "\n" + message_text(m).casefold()
        elif m.get("tool_calls"):
            for call in m["tool_calls"]:
                args = _json((call.get("function") or {}).get("arguments", ""))
                for leaf in _leaf_strings(args):
                    needle = leaf.casefold()
                    if needle in returned and needle not in said:
                        first = next(j for j in range(i) if messages[j].get("role") == "tool"
                                     and needle in message_text(messages[j]).casefold())
                        return [first, i]
    return []


DETECTORS: dict[str, Callable[[list[dict[str, Any]]], list[int]]] = {
    "error_recovery": error_recovery,
    "clarification": clarification,
    "clarification_not_inferable": clarification,
    "long_noisy_context": long_noisy_context,
    "multi_hop_reasoning": multi_hop_reasoning,
}


def detect(messages: list[dict[str, Any]]) -> Evidence:
    """Every pattern a deterministic detector finds in OpenAI-format messages, with its message indices."""
    found = {name: fn(messages) for name, fn in DETECTORS.items()}
    return {name: where for name, where in found.items() if where}


def verify(claimed: list[str], messages: list[dict[str, Any]], judge_evidence: Evidence | None = None) -> Evidence:
    """The claimed patterns the conversation really exercises, each with message indices.

    A pattern with a detector is verified by the detector alone; any other by the judge's
    evidence (`judge_evidence`, None when no judge ran: such a claim stays unverified).
    """
    detected = detect(messages)
    out: Evidence = {}
    for name in dict.fromkeys(claimed):
        if name in DETECTORS:
            if name in detected:
                out[name] = detected[name]
        elif judge_evidence and name in judge_evidence:
            out[name] = judge_evidence[name]
    return out
