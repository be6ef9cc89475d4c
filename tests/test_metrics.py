"""Each metric is high where it must be high and low where it must be low."""

import copy
import json

import dspy
import pytest

from gem_synth.optimizers.metrics import (
    Targets,
    complexity,
    extraction_score,
    filter_agreement,
    gem_feedback_metric,
    gem_metric,
    grounding,
    pattern_coverage,
    score_result,
    validity,
)
from gem_synth.signatures.chat import MESSAGES
from gem_synth.signatures.drafts import ToolSpec
from gem_synth.signatures.records import FilterLabels, JudgeVerdicts, Segment, SegmentResult, Trajectory
from gem_synth.signatures.workflow import Workflow
from tests.fixtures import TOOL_SPECS, TURNS, WORKFLOWS, verdicts


def traj(turns=TURNS, specs=TOOL_SPECS):
    return Trajectory(tools=[ToolSpec(**s).to_tool() for s in specs], messages=MESSAGES.validate_python(turns))


def long_turns(rounds: int):
    """A valid conversation with `rounds` user requests, each served by two tool calls."""
    turns = [TURNS[0]]
    for r in range(rounds):
        turns += [{"role": "user", "content": f"Patient P-{r} wants visit V-{r} claimed for {r} EUR."},
                  {"role": "assistant", "content": "", "tool_calls": [
                      {"id": f"a{r}", "type": "function", "function": {
                          "name": "list_visits", "arguments": json.dumps({"patient_id": f"P-{r}"})}}]},
                  {"role": "tool", "tool_call_id": f"a{r}", "content": json.dumps({"visits": [f"V-{r}"]})},
                  {"role": "assistant", "content": "", "tool_calls": [
                      {"id": f"b{r}", "type": "function", "function": {
                          "name": "get_claim_status", "arguments": json.dumps({"claim_id": f"V-{r}"})}}]},
                  {"role": "tool", "tool_call_id": f"b{r}", "content": "{\"status\": \"none\"}"},
                  {"role": "assistant", "content": f"Visit V-{r} has no claim yet."}]
    return turns


def result(trajectory=None, outcome="accepted", judge=None, patterns=(), draft_patterns=()):
    return SegmentResult(segment=Segment(id="s", source="t", text="x"), outcome=outcome, stage="validate",
                         trajectory=trajectory, judge=judge, patterns=list(patterns),
                         patterns_verified=list(dict.fromkeys([*patterns, *draft_patterns])),
                         draft_patterns=list(draft_patterns), labels=FilterLabels(is_procedural=True))


def test_validity_is_one_when_clean_and_falls_with_each_weighted_violation():
    assert validity(traj())[0] == 1.0
    one = validity(traj(TURNS[:-1]))  # ends on a tool result: O004
    assert one[0] == 0.5 and "O004" in one[1][0]
    bad = copy.deepcopy(TURNS)
    bad[2]["tool_calls"][0]["function"]["name"] = "nope"  # C001, weight 1
    bad[6]["tool_calls"][0]["function"]["arguments"] = json.dumps({"visit_id": "V-7"})  # C005, weight 0.5
    assert validity(traj(bad))[0] == pytest.approx(1 / 2.5)


def test_grounding_counts_calls_with_invented_values():
    assert grounding(traj())[0] == 1.0
    bad = copy.deepcopy(TURNS)
    bad[2]["tool_calls"][0]["function"]["arguments"] = json.dumps({"patient_id": "P-404"})
    assert grounding(traj(bad))[0] == 0.5
    assert grounding(traj([TURNS[0], TURNS[1], TURNS[4]]))[0] == 0.0  # no calls at all


def test_complexity_reaches_one_only_at_the_targets():
    small = complexity(traj())
    assert small[0] < 0.25 and any("tool_calls 2 below target 16.3" in n for n in small[1])
    big = complexity(traj(long_turns(9)), Targets(messages=40, distinct_tools_used=2, tool_calls=16, user_turns=9))
    assert big[0] == 1.0 and big[1] == []


def test_pattern_coverage_needs_three_distinct():
    assert pattern_coverage(["clarification", "clarification"])[0] == pytest.approx(1 / 3)
    assert pattern_coverage(["clarification", "rule_conflict", "error_recovery"])[0] == 1.0


def test_extraction_score_needs_valid_tools_covering_every_step():
    workflows = [Workflow(**w) for w in WORKFLOWS]
    specs = [ToolSpec(**s) for s in TOOL_SPECS]
    assert extraction_score(specs, workflows)[0] == 1.0
    assert extraction_score(specs[:1], workflows)[0] == pytest.approx(0.5 + 0.5 / 3)
    assert extraction_score(specs + specs[:1], workflows)[0] == 0.5  # duplicate tool: T003
    assert extraction_score([], workflows)[0] == 0.0


def test_composite_rewards_clean_complex_judged_trajectories():
    good = score_result(result(traj(long_turns(9)), judge=JudgeVerdicts(**verdicts()),
                               patterns=["clarification", "rule_conflict", "error_recovery"]))
    weak = score_result(result(traj(TURNS[:-1]), judge=JudgeVerdicts(**verdicts(r1=False, r3=False))))
    assert good.score > 0.9 and weak.score < 0.45
    assert good.parts["judge"] == 1.0 and weak.parts["judge"] == pytest.approx(1 / 3)
    text = "\n".join(weak.feedback)
    assert "validity: O004" in text and "judge: tool_call_hallucination failed: invented value" in text
    assert "patterns: exercises 0 pattern(s)" in text


def test_composite_scores_the_filter_decision_on_labelled_examples():
    filtered = result(outcome="filtered_out")
    assert score_result(filtered, dspy.Example(is_procedural=False)).score == 1.0
    assert score_result(filtered, dspy.Example(is_procedural=True)).score == 0.0
    assert score_result(filtered).score == 0.0
    kept = result(traj())
    assert score_result(kept, dspy.Example(is_procedural=False)).score == 0.0
    stopped = result(outcome="parse_error")
    assert score_result(stopped).score == 0.0 and "stopped at validate: parse_error" in score_result(stopped).text()


def test_dspy_metric_forms():
    pred = dspy.Prediction(result=result(traj(), judge=JudgeVerdicts(**verdicts())))
    assert 0 < gem_metric(dspy.Example(), pred) <= 1
    fb = gem_feedback_metric(dspy.Example(), pred, None, "generate.predict", None)
    assert fb.score == gem_metric(dspy.Example(), pred) and "complexity:" in fb.feedback
    labels = FilterLabels(is_procedural=True, task_category="healthcare")
    assert filter_agreement(dspy.Example(is_procedural=True, task_category="healthcare"),
                            dspy.Prediction(filter_labels=labels)) == 1.0
    assert filter_agreement(dspy.Example(is_procedural=False), dspy.Prediction(filter_labels=labels)) == 0.0
