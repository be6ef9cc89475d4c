"""What the rounds shape saves in output tokens, on the same recorded conversations.

    python -m benchmarks.bench_shapes tests/recordings/strong-model.jsonl [OLD_RECORDING]

Every conversation a strong model wrote in the recording (generate, refine, synthesize)
is measured twice: as written (rounds: no ids, no roles, arguments as objects) and as the
same conversation in the flat turn shape models wrote before issue 16 (a list of turns with
`role`, `content`, `tool_calls` [{id, name, arguments as a JSON string}] and
`tool_call_id`). Same content, two shapes: the ratio is the shape's overhead alone.
Tokens are characters / 4, as the relay counts them. With OLD_RECORDING, the mean answer
size per stage of both recordings is printed as well (different answers: content varies).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

FIELDS = {"generate": "trajectory", "refine": "refined_trajectory", "synthesize": "trajectory"}


def flat_turns(conversation: dict) -> list[dict]:
    """The conversation in the pre-issue-16 draft shape (signatures/drafts.Turn, as models wrote it)."""
    turns = [{"role": "system", "content": conversation["system"], "tool_calls": [], "tool_call_id": ""}]
    n = 0
    for rnd in conversation["rounds"]:
        turns.append({"role": "user", "content": rnd["user"], "tool_calls": [], "tool_call_id": ""})
        for step in rnd["steps"]:
            if "say" in step:
                turns.append({"role": "assistant", "content": step["say"], "tool_calls": [], "tool_call_id": ""})
                continue
            n += 1
            call = {"id": f"call_{n}", "name": step["call"]["name"],
                    "arguments": json.dumps({k: v for k, v in step["call"]["arguments"].items() if v is not None})}
            turns.append({"role": "assistant", "content": "", "tool_calls": [call], "tool_call_id": ""})
            turns.append({"role": "tool", "content": step["result"], "tool_calls": [], "tool_call_id": f"call_{n}"})
        turns.append({"role": "assistant", "content": rnd["reply"], "tool_calls": [], "tool_call_id": ""})
    return turns


def _tokens(value) -> int:
    return len(json.dumps(value, ensure_ascii=False)) // 4


def rows(path: Path) -> list[dict]:
    return [r for r in (json.loads(line) for line in path.read_text().splitlines() if line.strip()) if "answer" in r]


def overhead(path: Path) -> dict[str, tuple[int, float, float]]:
    """Per stage: (conversations, mean tokens in rounds, mean tokens of the same in flat turns)."""
    sizes: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for row in rows(path):
        field = FIELDS.get(row["stage"])
        if not field:
            continue
        conversation = json.loads(row["answer"]).get(field)
        if not conversation:  # the synthesizer on a text that is no procedure
            continue
        sizes[row["stage"]].append((_tokens(conversation), _tokens(flat_turns(conversation))))
    return {stage: (len(v), statistics.fmean(a for a, _ in v), statistics.fmean(b for _, b in v))
            for stage, v in sizes.items()}


def answer_sizes(path: Path) -> dict[str, float]:
    by_stage: dict[str, list[int]] = defaultdict(list)
    for row in rows(path):
        by_stage[row["stage"]].append(len(row["answer"]) // 4)
    return {stage: statistics.fmean(v) for stage, v in by_stage.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recording", type=Path)
    parser.add_argument("old", type=Path, nargs="?")
    args = parser.parse_args(argv)
    for path in filter(None, (args.recording, args.old)):
        if not path.is_file():
            print(f"bench_shapes: {path}: no such recording", file=sys.stderr)
            return 1
    print("| stage | conversations | tokens in rounds | same in flat turns | rounds / flat |")
    print("| --- | --- | --- | --- | --- |")
    for stage, (n, rounds, flat) in overhead(args.recording).items():
        print(f"| {stage} | {n} | {rounds:.0f} | {flat:.0f} | {rounds / flat:.2f} |")
    if args.old:
        new, old = answer_sizes(args.recording), answer_sizes(args.old)
        print("\n| stage | mean answer tokens, before | after |")
        print("| --- | --- | --- |")
        for stage in sorted(set(new) | set(old)):
            before = f"{old[stage]:.0f}" if stage in old else "-"
            after = f"{new[stage]:.0f}" if stage in new else "-"
            print(f"| {stage} | {before} | {after} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
