"""Validation by an LM judge: GEM's three binary hallucination rubrics, and which claimed patterns are real."""

import dspy

from gem_synth.signatures.chat import Tool
from gem_synth.signatures.conventions import instruction
from gem_synth.signatures.records import PatternEvidence, RubricVerdict


class HallucinationJudge(dspy.Signature):
    __doc__ = instruction("""Judge a tool-use conversation for three kinds of hallucination, each pass or fail, and check which claimed patterns it really exercises.

    Messages are numbered from 0 in the order given. Judge the assistant's turns only;
    user turns and tool results are the ground truth the assistant must stay faithful to.
    Structural rules (tool names, argument types, turn order) have already been checked
    by a program: judge meaning, not format.

    R1 `tool_call_hallucination`: fail if any argument value in an assistant tool call is
    not grounded under this rule:
    {grounding}

    R2 `capability_hallucination`: fail if the assistant claims it cannot do something
    that one of the tools allows, or claims to have done or to be able to do something
    that no tool allows, or states what the service, its app or its staff can do when
    nothing in the conversation backs it, or fails to tell the user about a real
    limitation (a rule or a missing tool) that stands in the way of their request.

    R3 `context_hallucination`: fail if the assistant refers wrongly to earlier turns
    (misquotes the user, misreports a tool result, contradicts what was established), or
    if a value (an ID, amount, date, status, name) changes between turns without a cause
    in the conversation.

    For each rubric give `passed`, the 0-based indices of the offending messages (empty
    when passed) and a short reason that names the offending value or claim.

    Patterns: the conversation's author claims it exercises `claimed_patterns`. For each
    claimed pattern that the conversation really exercises, give the pattern, the indices
    of the messages that show it and one sentence of evidence. Leave out every claimed
    pattern it does not really exercise (a mention is not an exercise: an error result
    the assistant never recovers from is not `error_recovery`). The patterns:
    {pattern_definitions}
    """)

    tools: list[Tool] = dspy.InputField(desc="The tool definitions available to the assistant (OpenAI format).")
    conversation: str = dspy.InputField(desc="The conversation, one message per block, each headed `[index] role`.")
    claimed_patterns: list[str] = dspy.InputField(desc="The patterns the conversation's author says it exercises.")

    tool_call_hallucination: RubricVerdict = dspy.OutputField(desc="R1: argument values not grounded in the conversation.")
    capability_hallucination: RubricVerdict = dspy.OutputField(desc="R2: false claims about what the assistant can or cannot do.")
    context_hallucination: RubricVerdict = dspy.OutputField(desc="R3: wrong references to earlier turns or values that drift.")
    patterns_exercised: list[PatternEvidence] = dspy.OutputField(
        desc="The claimed patterns the conversation really exercises, each with message indices and evidence."
    )
