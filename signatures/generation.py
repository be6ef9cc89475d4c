"""Stage 3 of GEM: one complete trajectory written in a single pass."""

import dspy

from gem_synth.signatures.conversation import Conversation
from gem_synth.signatures.drafts import ToolSpec
from gem_synth.signatures.conventions import instruction
from gem_synth.signatures.records import GenerationPattern
from gem_synth.signatures.workflow import Workflow


class TrajectoryGeneration(dspy.Signature):
    __doc__ = instruction("""Write one complete, realistic multi-turn conversation in which an assistant serves a user by calling the given tools.

    You write every turn yourself, in one pass: the system prompt, the user, the
    assistant, and the tools' results (simulated, as the real system would answer).

    Structure:
    1. `system`: the assistant's role in this domain, the current date, and the domain
       rules drawn from the text (eligibility, limits, deadlines, uniqueness rules, what
       needs confirmation), written as clear numbered rules.
    2. `rounds`: the user and the assistant taking turns, as described below.

    {rounds}

    Content:
    - The user has a real goal from the workflows. User requests may be ambiguous,
      complex (several needs at once) or may break a domain rule.
    - The assistant never invents a value. When a needed value is missing, it asks.
    - Tool responses are realistic: plausible IDs, dates, amounts and statuses that stay
      consistent across the conversation, and realistic errors (not found, invalid
      state, limit reached, validation failure). An error message says what went wrong,
      never how to fix it or which call to make instead.
    - Use at least 3 of these 5 patterns, each in at most two places of the conversation,
      and list each pattern you used once in `patterns_used`:
      `rule_conflict` (the user wants something a domain rule forbids; the assistant
      holds the rule and explains it); `error_recovery` (a tool returns an error and the
      assistant recovers sensibly); `clarification` (the assistant asks about an
      ambiguous request before acting); `multi_hop_reasoning` (the assistant combines
      several tool results to reach an answer); `rule_awareness` (the assistant checks or
      cites a domain rule before acting).
    - Size: this is a first draft that a later step makes longer and harder. Aim for 4
      to 7 rounds, 6 to 12 tool calls and 4 or more distinct tools called.

    {grounding}

    {confirmation}

    {secrets}

    {persona}
    """)

    text: str = dspy.InputField(desc="The source text the domain, rules and procedure come from.")
    workflows: list[Workflow] = dspy.InputField(desc="The workflows extracted from the text.")
    tools: list[ToolSpec] = dspy.InputField(desc="The tool set: the only tools the assistant may call.")

    trajectory: Conversation = dspy.OutputField(desc="The whole conversation: the system prompt and the rounds.")
    patterns_used: list[GenerationPattern] = dspy.OutputField(
        desc="The generation patterns the conversation really exercises (at least 3)."
    )
