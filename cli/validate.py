"""`gem-synth validate FILE`: rule checks on any OpenAI-format tool-use data.

`--rules openai` checks what every OpenAI-format tool-use record must satisfy, so a public
dataset without system turns (BFCL, xLAM, Glaive...) can be told apart from a broken one;
`--rules gem` (default) adds GEM's conventions. A line that is not JSON is reported as a
finding of its own and the check goes on. Exit status: 0 when no record has an error
(warnings, such as G001, are listed but pass unless --strict-grounding), 1 otherwise,
2 when FILE cannot be read at all.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from gem_synth.running.tables import NotJSON, UnreadableInput, json_records
from gem_synth.programs.validator import RULES, errors, validate, violation

__all__ = ["UnreadableInput", "run_validate"]


def run_validate(path: Path, grounding: bool, out, rules: str = "gem", strict_grounding: bool = False) -> int:
    codes: Counter[str] = Counter()
    failing = warned = total = 0
    for label, record in json_records(path):
        total += 1
        if isinstance(record, NotJSON):
            found = [violation("M001", None, str(record))]
        else:
            found = validate(record, grounding=grounding, rules=rules)  # tools may be a JSON string
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
