"""Rendering OpenAI-format trajectories through real chat templates, and checking what came out.

The templates are the ones llama.cpp ships in `models/templates/` (inside the
llama-cpp-python sdist): real Jinja chat templates of tool-calling models. Each expects
its own form of a tool call, so `render_any` tries gem-synth's `for_template` forms
in turn (string or dict arguments, 9-character ids, one call per turn, "" beside calls)
and keeps the first whose output holds every call, every argument value and every tool
result, in order. `missing` says what a rendering lost.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from gem_synth.running.exports import for_template
from gem_synth.programs.validator import leaves

FORMS = [dict(arguments=a, ids=i, split_parallel=s, empty_content=e, text_beside_calls=t)
         for t, a, i, s, e in itertools.product(("keep", "drop"), ("string", "dict"), ("keep", "mistral"), (False, True),
                                                (False, True))]


def render(template: str, record: dict[str, Any], extra: dict[str, Any] | None = None) -> str:
    """The template's text for the record, as transformers renders chat templates."""
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template(conversations=[record["messages"]], tools=record["tools"],
                                        chat_template=template, bos_token="<s>", eos_token="</s>",
                                        add_generation_prompt=False, **(extra or {}))
    return rendered[0]


def _leaf_forms(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]]
    if isinstance(value, bool):
        return [json.dumps(value), str(value)]
    if isinstance(value, float) and value.is_integer():
        return [json.dumps(value), str(int(value))]
    return [json.dumps(value), str(value)]


def _html_safe(text: str) -> str:
    """What Jinja's `tojson` filter does to a JSON string: <, >, & and ' as \\u escapes."""
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").replace("'", "\\u0027")


def _result_forms(content: str) -> list[str]:
    """A tool result as templates write it: verbatim, re-serialised, or JSON-encoded as a string (Llama 3.x)."""
    forms = [content, json.dumps(content)[1:-1], json.dumps(content, ensure_ascii=False)[1:-1]]
    try:
        value = json.loads(content)
    except (json.JSONDecodeError, TypeError):
        value = None
    if value is not None:
        for ascii_ in (True, False):
            for separators in ((", ", ": "), (",", ":")):
                dumped = json.dumps(value, ensure_ascii=ascii_, separators=separators)
                forms += [dumped, json.dumps(dumped, ensure_ascii=ascii_)[1:-1]]
    return list(dict.fromkeys(forms + [_html_safe(f) for f in forms]))


def missing(text: str, record: dict[str, Any]) -> list[str]:
    """What of the record's calls, argument values and tool results is absent from `text` or out of order."""
    problems, position = [], 0
    for m in record["messages"]:
        if m["role"] == "assistant":
            for call in m.get("tool_calls") or []:
                name = call["function"]["name"]
                found = text.find(name, position)
                if found < 0:
                    problems.append(f"call {name} missing or out of order")
                    continue
                position = found + len(name)
                arguments = call["function"]["arguments"]
                if isinstance(arguments, str) and json.dumps(arguments)[1:-1] in text and '"' in arguments:
                    problems.append(f"{name}: arguments double-encoded (the template wants them as a dict)")
                for leaf in (v for v in leaves(json.loads(arguments) if isinstance(arguments, str) else arguments)
                             if v is not None):
                    hits = [p for p in (text.find(f, position) for f in _leaf_forms(leaf)) if p >= 0]
                    if not hits:
                        problems.append(f"{name}: argument value {json.dumps(leaf)[:40]} missing or out of order")
                        continue
                    position = min(hits)
        elif m["role"] == "tool":
            hits = [p for p in (text.find(f, position) for f in _result_forms(m.get("content") or "")) if p >= 0]
            if not hits:
                problems.append(f"tool result {str(m.get('content'))[:40]!r} missing or out of order")
                continue
            position = min(hits)
    return problems


def render_any(template: str, record: dict[str, Any], extra: dict[str, Any] | None = None
               ) -> tuple[dict | None, list[str]]:
    """The first gem-synth form that renders `record` completely, or None and each form's problem."""
    tried = []
    for form in FORMS:
        shaped = for_template(record, **form)
        try:
            text = render(template, shaped, extra)
        except Exception as exc:  # a template that raises for this form: try the next
            tried.append(f"{form}: {type(exc).__name__}: {str(exc)[:120]}")
            continue
        problems = missing(text, shaped)
        if not problems:
            return form, []
        tried.append(f"{form}: {problems[0]}")
    return None, tried
