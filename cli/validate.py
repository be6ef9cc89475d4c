"""`gem-synth validate FILE`: rule checks on any OpenAI-format tool-use data.

`--rules openai` checks what every OpenAI-format tool-use record must satisfy, so a public
dataset without system turns (BFCL, xLAM, Glaive...) can be told apart from a broken one;
`--rules gem` (default) adds GEM's conventions. A line that is not JSON is reported as a
finding of its own and the check goes on. Exit status: 0 when no record has an error
(warnings, such as G001, are listed but pass unless --strict-grounding), 1 otherwise,
2 when FILE cannot be read at all.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gem_synth.programs.validator import RULES, errors, validate, violation


class UnreadableInput(Exception):
    pass


def records(path: Path) -> Iterator[tuple[str, Any]]:
    """(label, record) pairs from a JSON object, a JSON list of objects, or JSONL."""
    if not path.is_file():
        raise UnreadableInput(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableInput(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    if not text.strip():
        raise UnreadableInput(f"{path}: empty file")
    stripped = text.lstrip()
    if path.suffix.lower() != ".jsonl" and stripped[0] in "[{":
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None  # perhaps JSONL after all
        if data is not None:
            items = data if isinstance(data, list) else [data]
            for i, item in enumerate(items):
                yield (f"record {i}" if isinstance(data, list) else "record"), item
            return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield f"line {number}", json.loads(line)
        except json.JSONDecodeError as exc:
            yield f"line {number}", NotJSON(f"not JSON ({exc.msg} at column {exc.colno})")


class NotJSON(str):
    """A JSONL line that does not parse: reported as M001 for its line, the check goes on."""


def _normalise(record: Any) -> Any:
    """Accept `tools` as a JSON string too, as TRL does and as gem-synth's tables store it."""
    if isinstance(record, dict) and isinstance(record.get("tools"), str):
        try:
            return {**record, "tools": json.loads(record["tools"])}
        except json.JSONDecodeError:
            return record
    return record


def run_validate(path: Path, grounding: bool, out, rules: str = "gem", strict_grounding: bool = False) -> int:
    codes: Counter[str] = Counter()
    failing = warned = total = 0
    for label, record in records(path):
        total += 1
        if isinstance(record, NotJSON):
            found = [violation("M001", None, str(record))]
        else:
            found = validate(_normalise(record), grounding=grounding, rules=rules)
        blocking = found if strict_grounding else errors(found)
        failing += bool(blocking)
        warned += bool(found) and not blocking
        for v in found:
            print(f"{label}: {v.line()}" + (" (warning)" if v.severity == "warning" else ""), file=out)
        codes.update(v.code for v in found)
    print(f"{total} record(s) checked with the {rules} rules: {failing} with errors"
          + (", counting warnings" if strict_grounding else f", {warned} with warnings only"), file=out)
    for code, n in sorted(codes.items()):
        print(f"  {code} {RULES[code].name:<28}{n}", file=out)
    return 1 if failing else 0
