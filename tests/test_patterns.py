"""GEM patterns verified from real transcripts (the strong-model sample output), never taken on claim.

For each deterministic detector: a real trajectory that exercises the pattern, and the same
trajectory edited minimally so that it only claims it.
"""

import copy
import json
import re
from pathlib import Path

import pytest

from gem_synth.programs.patterns import DETECTORS, detect, is_error_result, verify

SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "sample-output" / "trajectories.jsonl"
REAL = [json.loads(line)["messages"] for line in SAMPLE.read_text().splitlines()]


def first_with(pattern):
    return next(m for m in REAL if pattern in detect(m))


def unrecovered(messages):
    """Cut the conversation after its first tool error: the error is never recovered from."""
    i = next(k for k, m in enumerate(messages) if m["role"] == "tool" and is_error_result(m["content"]))
    return messages[:i + 1] + [{"role": "assistant", "content": "I could not complete that."}]


def no_questions(messages):
    out = copy.deepcopy(messages)
    for m in out:
        if m["role"] == "assistant" and not m.get("tool_calls"):
            m["content"] = (m["content"] or "").replace("?", ".")
    return out


def short_results(messages):
    out = copy.deepcopy(messages)

    def first(v):
        if isinstance(v, list):
            return [first(x) for x in v[:1]]
        if isinstance(v, dict):
            return {k: first(x) for k, x in v.items()}
        return v
    for m in out:
        if m["role"] == "tool":
            try:
                m["content"] = json.dumps(first(json.loads(m["content"])))
            except json.JSONDecodeError:
                pass
    return out


def results_said_by_the_user(messages):
    out = copy.deepcopy(messages)
    user = next(m for m in out if m["role"] == "user")
    user["content"] += " " + " ".join(m["content"] for m in out if m["role"] == "tool")
    return out


ONLY_CLAIMED = {"error_recovery": unrecovered, "clarification": no_questions,
                "clarification_not_inferable": no_questions, "long_noisy_context": short_results,
                "multi_hop_reasoning": results_said_by_the_user}


@pytest.mark.parametrize("pattern", sorted(DETECTORS))
def test_a_real_trajectory_exercises_the_pattern_and_an_edited_one_only_claims_it(pattern):
    real = first_with(pattern)
    evidence = verify([pattern], real)
    assert pattern in evidence and all(0 <= i < len(real) for i in evidence[pattern])
    assert verify([pattern], ONLY_CLAIMED[pattern](real)) == {}


def test_error_recovery_evidence_points_at_the_error_and_the_later_success():
    real = first_with("error_recovery")
    error, success = verify(["error_recovery"], real)["error_recovery"]
    assert is_error_result(real[error]["content"]) and not is_error_result(real[success]["content"])
    assert error < success


def test_patterns_without_a_detector_need_the_judges_evidence():
    real = REAL[0]
    assert verify(["pitfall", "rule_conflict"], real) == {}  # no judge ran: the claims stay unverified
    assert verify(["pitfall", "rule_conflict"], real, {"pitfall": [12, 13]}) == {"pitfall": [12, 13]}


def test_unclaimed_patterns_are_not_credited():
    real = first_with("long_noisy_context")
    assert "long_noisy_context" not in verify(["error_recovery"], real)


def test_every_real_trajectory_verifies_at_least_three_patterns_from_the_transcript_alone():
    for messages in REAL:
        assert len(detect(messages)) >= 3, re.sub(r"\s+", " ", messages[1]["content"])[:80]
