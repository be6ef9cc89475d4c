"""The composed GEM program on a scripted engine: every way a segment can end."""

import dspy
import pytest

from gem_synth.programs.adapter import GEMJSONAdapter
from gem_synth.programs.pipeline import GEMPipeline, Stages, run_segment
from gem_synth.signatures import (
    ComplexityRefinement,
    HallucinationJudge,
    ToolExtension,
    TrajectoryGeneration,
    WorkflowExtraction,
)
from gem_synth.signatures.records import Segment
from tests.fixtures import (
    BROKEN,
    CONVERSATION,
    PROCEDURE,
    STORY,
    TOOL_SPECS,
    TURNS,
    conversation_with,
    handlers,
    verdicts,
)
from tests.scripted import scripted_lm, server_error


def run(text, overrides=None, stages=None):
    lm, engine = scripted_lm(handlers(overrides))
    with dspy.context(lm=lm, adapter=GEMJSONAdapter()):
        result = run_segment(GEMPipeline(stages), Segment(id="s1", source="test", text=text))
    return result, engine


def test_accepted_path_keeps_every_intermediate_output():
    result, engine = run(PROCEDURE)
    assert result.outcome == "accepted" and result.stage == "judge"
    record = result.record
    assert record.id == "s1" and record.segment.text == PROCEDURE
    assert record.labels.task_category == "healthcare"
    assert [w.name for w in record.workflows] == ["file_reimbursement_claim"]
    assert record.workflows[0].graph() == "(find_visit) -> (submit) -> (track)"
    assert [t.name for t in record.trajectory.tools] == [s["name"] for s in TOOL_SPECS]
    assert record.stats.messages == len(TURNS) and record.stats.tool_calls == 2
    assert record.stats.distinct_tools_used == 2 and record.stats.user_turns == 2
    assert record.patterns_claimed == ["multi_constraint_turn", "pitfall", "rule_awareness", "clarification",
                                       "multi_hop_reasoning"]
    assert result.draft_patterns == ["rule_awareness", "clarification", "multi_hop_reasoning"]
    # the transcript shows the question before submitting and the visit id found by list_visits; the
    # other claims need the judge's evidence, and this judge gave none
    assert record.patterns_verified == ["clarification", "multi_hop_reasoning"]
    assert record.pattern_evidence == {"clarification": [4, 5, 6], "multi_hop_reasoning": [3, 6]}
    assert record.judge.passed and result.violations == []
    assert dict(engine.calls) == {"RelevanceFilter": 1, "WorkflowExtraction": 1, "TrajectoryGeneration": 1,
                                  "ToolExtension": 1, "ComplexityRefinement": 1, "HallucinationJudge": 1}
    # The canonical form: tool calls carry JSON-string arguments and null content.
    msg = record.trajectory.to_openai()["messages"][2]
    assert msg["content"] is None and msg["tool_calls"][0]["function"]["arguments"] == '{"patient_id": "P-100"}'


def test_filtered_out_stops_after_one_call():
    result, engine = run(STORY)
    assert (result.outcome, result.stage) == ("filtered_out", "filter")
    assert result.labels.summary == "A story." and result.record is None
    assert sum(engine.calls.values()) == 1


def test_unparseable_stage_output_is_a_parse_error_at_that_stage():
    result, engine = run(PROCEDURE, {TrajectoryGeneration: lambda i: "Sure! Here is a conversation: ..."})
    assert (result.outcome, result.stage) == ("parse_error", "generate")
    assert result.workflows and result.draft is None
    # Asked once more (parse_retries=1, a fresh uncached call), never through another adapter.
    assert engine.calls["TrajectoryGeneration"] == 2


def test_a_one_off_garbled_answer_is_asked_again_and_recovers():
    answers = iter(['{"trajectory": {"system": "You are', None])

    def flaky(i):
        first = next(answers)
        return first if first is not None else {"trajectory": CONVERSATION, "patterns_used": []}

    result, engine = run(PROCEDURE, {TrajectoryGeneration: flaky})
    assert result.outcome == "accepted" and engine.calls["TrajectoryGeneration"] == 2
    no_retry, _ = run(PROCEDURE, {TrajectoryGeneration: lambda i: "garbage"}, stages=Stages(parse_retries=0))
    assert no_retry.outcome == "parse_error"


def test_wrongly_typed_output_is_a_parse_error():
    bad = {"workflows": "none", "tools": TOOL_SPECS}
    result, _ = run(PROCEDURE, {WorkflowExtraction: lambda i: bad})
    assert (result.outcome, result.stage) == ("parse_error", "extract")
    # the reason says which field failed and how, not the unparsed answer DSPy appends
    assert result.reason.startswith("Failed to parse field workflows") and "LM Response" not in result.reason
    assert "Adapter" not in result.reason and not result.reason.endswith("...")


def test_refined_trajectory_with_rule_violations_is_rejected_with_codes():
    answer = {"refined_trajectory": BROKEN, "patterns_used": []}
    result, engine = run(PROCEDURE, {ComplexityRefinement: lambda i: answer})
    assert (result.outcome, result.stage) == ("rule_violations", "validate")
    assert {v.code for v in result.violations} == {"O006"}
    assert "O006" in result.reason and result.trajectory is not None
    assert engine.calls["HallucinationJudge"] == 0  # the judge is not spent on broken data


def test_a_call_outside_the_tool_set_does_not_parse_and_is_asked_again():
    """Without a constrained decoder (the scripted engine ignores response_format) the per-segment type
    still holds: a call to another tool, or with another tool's arguments, is no answer."""
    wrong_tool = conversation_with(rounds=[{**CONVERSATION["rounds"][0], "steps": [
        {"call": {"name": "delete_patient", "arguments": {"patient_id": "P-100"}}, "result": "{}"}]}])
    wrong_args = conversation_with(rounds=[{**CONVERSATION["rounds"][0], "steps": [
        {"call": {"name": "list_visits", "arguments": {"claim_id": "CLM-9"}}, "result": "{}"}]}])
    for bad in (wrong_tool, wrong_args):
        result, engine = run(PROCEDURE, {TrajectoryGeneration: lambda i, bad=bad: {"trajectory": bad,
                                                                                   "patterns_used": []}})
        assert (result.outcome, result.stage) == ("parse_error", "generate")
        assert result.reason.startswith("Failed to parse field trajectory")
        assert engine.calls["TrajectoryGeneration"] == 2 and engine.calls["HallucinationJudge"] == 0


def test_generation_is_asked_for_the_segments_own_schema():
    seen = {}

    def generate(inputs):
        seen["system"] = inputs["__system__"]
        return {"trajectory": CONVERSATION, "patterns_used": []}

    run(PROCEDURE, {TrajectoryGeneration: generate})
    # the prompt's schema of `trajectory` names each tool as a constant with its own arguments
    assert "call_submit_claim" in seen["system"] and "submit_claim_arguments" in seen["system"]
    assert "call_list_visits" in seen["system"] and "delete_patient" not in seen["system"]


def test_the_refiner_sees_the_draft_with_its_parameter_names():
    """The draft is decoded into neutral field names (p0, p1: any parameter name is valid); the helpers
    answering the relay saw those in the refinement requests. The refiner is shown the real names."""
    seen = {}

    def extend(inputs):
        seen["extend"] = inputs["trajectory"]
        return {"new_tools": []}

    def refine(inputs):
        seen["refine"] = inputs["trajectory"]
        return {"refined_trajectory": CONVERSATION, "patterns_used": []}

    result, _ = run(PROCEDURE, {ToolExtension: extend, ComplexityRefinement: refine})
    assert result.outcome == "accepted"
    for shown in seen.values():
        assert '"patient_id": "P-100"' in shown and '"visit_id": "V-7"' in shown and '"p0"' not in shown
        assert '"channel"' not in shown  # an unused optional parameter is left out, not shown as null


def test_draft_violations_reach_the_refiner_as_known_issues():
    seen = {}

    def refine(inputs):
        seen["issues"] = inputs["known_issues"]
        return {"refined_trajectory": CONVERSATION, "patterns_used": []}

    result, _ = run(PROCEDURE, {TrajectoryGeneration: lambda i: {"trajectory": BROKEN,
                                                                 "patterns_used": []},
                                ComplexityRefinement: refine})
    assert result.outcome == "accepted"
    assert "O006" in seen["issues"]


def test_no_extracted_tools_stop_at_extraction():
    result, engine = run(PROCEDURE, {WorkflowExtraction: lambda i: {"workflows": [], "tools": []}})
    assert (result.outcome, result.stage, result.reason) == ("rule_violations", "extract", "no tools extracted")
    assert engine.calls["TrajectoryGeneration"] == 0


def test_duplicate_tools_are_merged_and_secret_parameters_dropped_with_notes():
    again = {**TOOL_SPECS[2], "parameters": [
        *TOOL_SPECS[2]["parameters"],
        {"name": "note", "type": "string", "description": "A note.", "required": False},
        {"name": "portal_password", "type": "string", "description": "Password.", "required": True}]}
    seen = {}

    def generate(inputs):
        seen["tools"] = inputs["tools"]
        return {"trajectory": CONVERSATION, "patterns_used": []}

    result, _ = run(PROCEDURE, {WorkflowExtraction: lambda i: {"workflows": [], "tools": [*TOOL_SPECS, again]},
                                TrajectoryGeneration: generate})
    assert result.outcome == "accepted"
    tools = {t.name: t for t in result.record.trajectory.tools}
    assert list(tools) == [s["name"] for s in TOOL_SPECS]
    assert list(tools["submit_claim"].function.parameters["properties"]) == ["visit_id", "amount", "channel", "note"]
    assert result.notes == ["tool `submit_claim` defined 2 times: merged (added `note`, `portal_password`)",
                            "parameter `submit_claim.portal_password` dropped: a tool never takes a secret"]
    assert seen["tools"].count('"name": "submit_claim"') == 1


def test_judge_failure_names_the_failed_rubrics():
    result, _ = run(PROCEDURE, {HallucinationJudge: lambda i: verdicts(r1=False, r3=False)})
    assert (result.outcome, result.stage) == ("judge_failed", "judge")
    assert result.reason == "failed tool_call_hallucination, context_hallucination"
    assert result.judge.tool_call_hallucination.offending_messages == [6]


def test_lm_error_is_recorded_not_raised():
    result, _ = run(PROCEDURE, {WorkflowExtraction: lambda i: server_error()})
    assert (result.outcome, result.stage) == ("lm_error", "extract")
    assert "scripted outage" in result.reason


@pytest.mark.parametrize("spec, calls", [
    ("filter,extract,generate,validate", {"RelevanceFilter", "WorkflowExtraction", "TrajectoryGeneration"}),
    ("extract,generate,judge", {"WorkflowExtraction", "TrajectoryGeneration", "HallucinationJudge"}),
])
def test_stage_switches_for_ablations(spec, calls):
    result, engine = run(PROCEDURE, stages=Stages.parse(spec))
    assert result.outcome == "accepted"
    assert set(engine.calls) == calls
    assert result.record.patterns_claimed == ["rule_awareness", "clarification", "multi_hop_reasoning"]


def test_strict_grounding_rejects_ungrounded_values():
    first = CONVERSATION["rounds"][0]
    invented = conversation_with(rounds=[{**first, "steps": [{**first["steps"][0], "call": {
        "name": "list_visits", "arguments": {"patient_id": "P-555"}}}]}, *CONVERSATION["rounds"][1:]])
    answer = {"refined_trajectory": invented, "patterns_used": []}
    lenient, _ = run(PROCEDURE, {ComplexityRefinement: lambda i: answer})
    assert lenient.outcome == "accepted" and [w.code for w in lenient.record.warnings] == ["G001"]
    strict, _ = run(PROCEDURE, {ComplexityRefinement: lambda i: answer}, stages=Stages(strict_grounding=True))
    assert (strict.outcome, strict.stage) == ("rule_violations", "validate")


def test_unknown_stage_name_is_refused():
    with pytest.raises(ValueError, match="unknown stage"):
        Stages.parse("filter,rephrase")


def test_predictors_are_named_by_stage():
    names = [name for name, _ in GEMPipeline().named_predictors()]
    assert names == ["filter.predict", "extract.predict", "generate.predict", "refine.extend", "refine.predict",
                     "judge.predict"]
