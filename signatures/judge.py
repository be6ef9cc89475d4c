"""Validation by an LM judge: GEM's three binary hallucination rubrics."""

import dspy

from signatures.chat import Tool
from signatures.records import RubricVerdict


class HallucinationJudge(dspy.Signature):
    """Judge a tool-use conversation for three kinds of hallucination, each pass or fail.

    Messages are numbered from 0 in the order given. Judge the assistant's turns only;
    user turns and tool results are the ground truth the assistant must stay faithful to.
    Structural rules (tool names, argument types, turn order) have already been checked
    by a program: judge meaning, not format.

    R1 `tool_call_hallucination`: fail if any argument value in an assistant tool call
    cannot be derived from the conversation so far, that is from the system prompt, what
    the user said, or what earlier tool results returned. Reasonable normalisation is
    fine ("next Friday" to a date given the current date in context, "two" to 2,
    "Economy" to an enum value `economy`); an ID, name, amount or date that appears
    nowhere before the call is a hallucination.

    R2 `capability_hallucination`: fail if the assistant claims it cannot do something
    that one of the tools allows, or claims to have done or to be able to do something
    that no tool allows, or fails to tell the user about a real limitation (a rule or a
    missing tool) that stands in the way of their request.

    R3 `context_hallucination`: fail if the assistant refers wrongly to earlier turns
    (misquotes the user, misreports a tool result, contradicts what was established), or
    if a value (an ID, amount, date, status, name) changes between turns without a cause
    in the conversation.

    For each rubric give `passed`, the 0-based indices of the offending messages (empty
    when passed) and a short reason that names the offending value or claim.
    """

    tools: list[Tool] = dspy.InputField(desc="The tool definitions available to the assistant (OpenAI format).")
    conversation: str = dspy.InputField(desc="The conversation, one message per block, each headed `[index] role`.")

    tool_call_hallucination: RubricVerdict = dspy.OutputField(desc="R1: argument values not derivable from the conversation.")
    capability_hallucination: RubricVerdict = dspy.OutputField(desc="R2: false claims about what the assistant can or cannot do.")
    context_hallucination: RubricVerdict = dspy.OutputField(desc="R3: wrong references to earlier turns or values that drift.")
