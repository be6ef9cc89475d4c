"""What constrained shapes change, read from finished run folders (issue 16's two tables).

    python -m benchmarks.bench_constrained LABEL=RUN_DIR [LABEL=RUN_DIR ...]

For each run: segments that passed the filter, segments that reached generation,
rule-valid trajectories (the validator passed: accepted, or stopped later by the judge),
parse errors and rule violations by stage, accepted trajectories, wall time per segment
(all sessions), completion tokens per accepted trajectory, and the accepted trajectories'
mean complexity next to the paper's. Runs are compared as made: the embedded model
before and after on the example corpus, and the recorded strong-model stand-in before and
after (replays of `tests/recordings/`). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter
from pathlib import Path

REACHED_GENERATION = {"generate", "refine", "validate", "judge"}


def _rows(run: Path) -> list[dict]:
    """The journal's final result per segment (the run's own accounting)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from gem_synth.running.tables import final_entries

    return [e for e in final_entries(run / "journal.jsonl")]


def measure(run: Path) -> dict:
    """One run folder's figures; raises FileNotFoundError when it is not a finished run."""
    entries = _rows(run)
    results = [e["result"] for e in entries if e.get("result")]
    outcomes = Counter(r["outcome"] for r in results)
    passed_filter = [r for r in results if r["outcome"] != "filtered_out"]
    reached = [r for r in results if r["stage"] in REACHED_GENERATION]
    rule_valid = [r for r in results if r["outcome"] == "accepted" or r["stage"] == "judge"]
    accepted = [r for r in results if r["outcome"] == "accepted"]
    tokens = sum(int((e.get("usage") or {}).get("completion_tokens") or 0) for e in entries if e.get("result"))
    sessions = [json.loads(line) for line in (run / "sessions.jsonl").read_text().splitlines() if line.strip()]
    wall = sum(s.get("wall_seconds", 0.0) for s in sessions)
    stats = [r["record"]["stats"] for r in accepted if r.get("record")]

    def mean(key):
        return statistics.fmean(s[key] for s in stats) if stats else float("nan")

    return {
        "segments": len(results),
        "passed_filter": len(passed_filter),
        "reached_generation": len(reached),
        "rule_valid": len(rule_valid),
        "accepted": len(accepted),
        "parse_errors": dict(Counter(r["stage"] for r in results if r["outcome"] == "parse_error")),
        "rule_violations": dict(Counter(r["stage"] for r in results if r["outcome"] == "rule_violations")),
        "violation_codes": dict(Counter(v["code"] for r in results for v in r.get("violations") or []
                                        if v.get("severity") == "error")),
        "outcomes": dict(outcomes),
        "wall_per_segment": wall / max(1, len(results)),
        "completion_tokens_per_accepted": tokens / len(accepted) if accepted else float("nan"),
        "messages": mean("messages"), "tool_calls": mean("tool_calls"),
        "distinct_tools": mean("distinct_tools_used"),
    }


def table(runs: dict[str, dict]) -> str:
    head = ("| run | segments | passed filter | reached generation | rule-valid | accepted | parse errors "
            "(stage) | rule violations (stage: codes) | s / segment | output tokens / accepted | messages | calls "
            "| tools |")
    lines = [head, "|" + " --- |" * 14]
    for label, m in runs.items():
        def fmt(d):
            return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "0"
        lines.append(
            f"| {label} | {m['segments']} | {m['passed_filter']} | {m['reached_generation']} | {m['rule_valid']} "
            f"| {m['accepted']} | {fmt(m['parse_errors'])} | {fmt(m['rule_violations'])}"
            f"{' (' + fmt(m['violation_codes']) + ')' if m['violation_codes'] else ''} "
            f"| {m['wall_per_segment']:.1f} | {m['completion_tokens_per_accepted']:.0f} | {m['messages']:.1f} "
            f"| {m['tool_calls']:.1f} | {m['distinct_tools']:.1f} |")
    lines.append("| paper (after refinement) | | | | | | | | | | 46.1 | 16.3 | 8.6 |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="LABEL=RUN_DIR")
    args = parser.parse_args(argv)
    runs = {}
    for spec in args.runs:
        label, _, path = spec.partition("=")
        if not path:
            parser.error(f"{spec!r}: give LABEL=RUN_DIR")
        try:
            runs[label] = measure(Path(path))
        except (FileNotFoundError, json.JSONDecodeError) as exc:
            print(f"bench_constrained: {path}: not a finished run ({exc})", file=sys.stderr)
            return 1
    print(table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
