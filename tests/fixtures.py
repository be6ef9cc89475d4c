"""Hand-written GEM data: a valid claims trajectory and scripted stage answers around it."""

from __future__ import annotations

import copy
import json

from gem_synth.signatures import (
    ComplexityRefinement,
    HallucinationJudge,
    RelevanceFilter,
    ToolExtension,
    TrajectoryGeneration,
    WorkflowExtraction,
)

PROCEDURE = (
    "To claim a reimbursement, sign in to the patient portal and open Claims. Pick the visit "
    "the claim is for, attach the receipt and submit. Only one active claim is allowed per visit. "
    "You can follow the claim's status under My Claims; decisions take up to 10 working days."
)
STORY = "The old lighthouse keeper watched the storm roll in, remembering the summer of his youth."

TOOL_SPECS = [
    {"name": "list_visits", "description": "List a patient's visits with their ids and dates.", "kind": "read",
     "parameters": [{"name": "patient_id", "type": "string", "description": "Patient id.", "required": True}]},
    {"name": "get_claim_status", "description": "Return the status of a claim.", "kind": "read",
     "parameters": [{"name": "claim_id", "type": "string", "description": "Claim id.", "required": True}]},
    {"name": "submit_claim", "description": "Submit a reimbursement claim for a visit.", "kind": "write",
     "parameters": [
         {"name": "visit_id", "type": "string", "description": "Visit id.", "required": True},
         {"name": "amount", "type": "number", "description": "Amount in EUR.", "required": True},
         {"name": "channel", "type": "string", "description": "Where it was filed.", "required": False,
          "enum": ["portal", "phone"]},
     ]},
]

WORKFLOWS = [{
    "name": "file_reimbursement_claim",
    "goal": "Get a visit's costs reimbursed.",
    "steps": [
        {"name": "find_visit", "description": "Find the visit.", "tools": ["list_visits"], "depends_on": []},
        {"name": "submit", "description": "Submit the claim.", "tools": ["submit_claim"], "depends_on": ["find_visit"]},
        {"name": "track", "description": "Follow the claim.", "tools": ["get_claim_status"], "depends_on": ["submit"]},
    ],
    "branches": [],
    "constraints": [{"kind": "uniqueness", "description": "One active claim per visit."}],
}]

CONVERSATION = {
    "system": "You are a claims assistant. Rules: 1. One active claim per visit. 2. Confirm before submitting.",
    "rounds": [
        {"user": "Hi, I'm patient P-100. I want to claim 80 EUR for my last visit.",
         "steps": [{"call": {"name": "list_visits", "arguments": {"patient_id": "P-100"}},
                    "result": json.dumps({"visits": [{"visit_id": "V-7", "date": "2026-11-02"}]})}],
         "reply": "Your last visit is V-7 on 2026-11-02. Shall I submit a claim of 80 EUR?"},
        {"user": "Yes, please submit it.",
         "steps": [{"call": {"name": "submit_claim", "arguments": {"visit_id": "V-7", "amount": 80}},
                    "result": json.dumps({"claim_id": "CLM-9", "status": "submitted"})}],
         "reply": "Done: claim CLM-9 is submitted. Decisions take up to 10 working days."},
    ],
}


def _turns() -> list[dict]:
    from gem_synth.signatures.conversation import Conversation

    return [m.to_openai() for m in Conversation.model_validate(CONVERSATION).to_messages()]


# The same conversation as OpenAI messages (what the validator and exports read).
TURNS = _turns()

PASS = {"passed": True, "offending_messages": [], "reason": "No problem found."}


def verdicts(r1: bool = True, r2: bool = True, r3: bool = True) -> dict:
    def v(ok):
        return PASS if ok else {"passed": False, "offending_messages": [6], "reason": "invented value"}
    return {"tool_call_hallucination": v(r1), "capability_hallucination": v(r2), "context_hallucination": v(r3),
            "patterns_exercised": []}


def openai_record() -> dict:
    """The valid trajectory in OpenAI format, as `validate` and trainers read it."""
    from gem_synth.signatures.drafts import ToolSpec

    return {"tools": [ToolSpec(**s).to_tool().to_openai() for s in TOOL_SPECS], "messages": copy.deepcopy(TURNS)}


def trajectory():
    """The valid trajectory as a `Trajectory`."""
    from gem_synth.signatures.records import Trajectory

    return Trajectory.from_openai(openai_record())


def handlers(overrides: dict | None = None) -> dict:
    """Scripted answers for every stage: procedural iff the text mentions a claim."""
    base = {
        RelevanceFilter: lambda i: {
            "is_procedural": "claim" in i["text"].lower(), "summary": "How to file a claim." if "claim" in
            i["text"].lower() else "A story.", "domain": "health insurance claims", "platform": "patient portal",
            "task_category": "healthcare"},
        WorkflowExtraction: lambda i: {"workflows": WORKFLOWS, "tools": TOOL_SPECS},
        TrajectoryGeneration: lambda i: {"trajectory": CONVERSATION, "patterns_used": [
            "rule_awareness", "clarification", "multi_hop_reasoning"]},
        ToolExtension: lambda i: {"new_tools": []},
        ComplexityRefinement: lambda i: {"refined_trajectory": CONVERSATION,
                                         "patterns_used": ["multi_constraint_turn", "pitfall"]},
        HallucinationJudge: lambda i: verdicts(),
    }
    base.update(overrides or {})
    return base


def without_calls(conversation: dict) -> dict:
    """The conversation with every step removed: well formed, but no tool-use trajectory (rule O006)."""
    return {**conversation, "rounds": [{**r, "steps": []} for r in conversation["rounds"]]}


# A conversation that fails one rule: what an optimizer is scored on improving.
BROKEN = without_calls(CONVERSATION)


def conversation_with(**changes) -> dict:
    """A deep copy of CONVERSATION with top-level keys replaced: `conversation_with(system="...")`."""
    out = copy.deepcopy(CONVERSATION)
    out.update(changes)
    return out


def turns_with(**changes) -> list[dict]:
    """A deep copy of TURNS with some turns replaced: `turns_with(t3={...})`."""
    turns = copy.deepcopy(TURNS)
    for key, value in changes.items():
        turns[int(key[1:])] = value
    return turns
