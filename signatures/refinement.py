"""Stage 4 of GEM: complexity refinement, as two calls.

GEM's refiner rewrites the conversation and may extend the tool set in one pass. Here
the tools come first (`ToolExtension`) and the rewrite second (`ComplexityRefinement`),
because a conversation can only be constrained to a tool set that exists before it is
written: with the tools known, every call of the rewrite is decoded against them
(signatures/conversation.py). The extension is a short answer; the rewrite is the long one.
"""

import dspy

from gem_synth.signatures.conventions import instruction
from gem_synth.signatures.conversation import Conversation
from gem_synth.signatures.drafts import ToolSpec
from gem_synth.signatures.records import RefinementPattern
from gem_synth.signatures.workflow import Workflow


class ToolExtension(dspy.Signature):
    __doc__ = instruction("""Add the tools that a harder, longer version of a tool-use conversation will need and the tool set lacks.

    A later step rewrites the conversation to be harder: about 45 to 55 messages, 8 or
    more distinct tools called and 15 to 20 tool calls, with a database schema in the
    system prompt, a tool result padded with many irrelevant records, pitfalls, and
    requests that carry several constraints at once. Look at the tool set and the
    conversation and write only the tools that are missing for that: further look-ups
    (list, search, check status, read a policy or a limit), and writes the workflows
    imply but no tool covers. Return an empty list if the set is already enough.

    New tools follow the same rules as the existing ones: one purpose each, a `read` or
    `write` kind, snake_case verb_object names that no existing tool has, self-explanatory
    parameter names with precise types (integer vs number, booleans, arrays with element
    types, closed sets as enums, formats such as ISO 8601 dates in the description), a
    parameter required only when the call is meaningless without it. Never add a tool
    for what no system could do (a request the assistant must decline stays without a
    tool: that is the `no_tool_available` pattern).

    {secrets}
    """)

    text: str = dspy.InputField(desc="The source text of the domain.")
    workflows: list[Workflow] = dspy.InputField(desc="The workflows extracted from the text.")
    tools: list[ToolSpec] = dspy.InputField(desc="The current tool set.")
    trajectory: Conversation = dspy.InputField(desc="The draft conversation that will be rewritten.")

    new_tools: list[ToolSpec] = dspy.OutputField(desc="Only the tools to add, none of them already in the set; empty if none.")


class ComplexityRefinement(dspy.Signature):
    __doc__ = instruction("""Rewrite a tool-use conversation to be harder, longer and more realistic, with the given tool set.

    Keep the domain, the source text's rules and the user's underlying goal, and return
    the complete rewritten conversation. The tool set is final: it already includes any
    tools added for the harder version, and the conversation calls only these tools.

    Make it harder:
    - System prompt: add a database schema (the tables or records behind the tools, with
      their key fields) and stricter, more detailed domain rules.
    - Give the user a persona (who they are, what they know, how they talk) and let it
      show in their turns only (see below).
    - At least one user turn carries several constraints at once (dates, budget, limits,
      preferences) that the assistant must all honour.
    - At least one step needs reasoning over long context: a tool result padded with
      many irrelevant but realistic records, from which the assistant must pick the right
      one.
    - One or two deliberate pitfalls: a plausible but wrong action the assistant must
      avoid (acting on the wrong record, skipping a rule, writing without confirmation).
    - The draft's own patterns (rule conflicts, clarifications, multi-hop reasoning, rule
      checks) stay where they fit. Add at least 3 of these refinement patterns, each in at
      most two places of the conversation, and list each one the rewritten conversation
      exercises once in `patterns_used` (only these names: the draft's are checked anyway): `error_recovery` (a tool error
      the assistant recovers from); `long_noisy_context`; `clarification_inferable` (an
      ambiguity the assistant resolves from context without asking) and
      `clarification_not_inferable` (one it must ask about); `no_tool_available` (the
      user asks for something no tool can do and the assistant says so honestly);
      `user_guided_steps` (the assistant guides the user through steps only the user can
      do, such as signing a form or checking their email); `multi_constraint_turn`;
      `pitfall`.
    - Size: aim for 7 to 9 rounds, 15 to 20 tool calls and 8 or more distinct tools
      called (about 45 to 55 messages in all: each call and its result count as two).

    Keep every rule of a valid conversation, and fix each problem listed in
    `known_issues` (found by a rule checker in the conversation you are given):
    - calls use only tools in the tool set, with argument names and types as defined
      and required arguments present;
    - the assistant never invents a value, and writes only after the user's explicit
      confirmation;
    - tool errors say what went wrong, never how to fix it; values stay consistent
      across rounds.

    {rounds}

    {grounding}

    {confirmation}

    {secrets}

    {persona}
    """)

    text: str = dspy.InputField(desc="The source text of the domain.")
    workflows: list[Workflow] = dspy.InputField(desc="The workflows extracted from the text.")
    tools: list[ToolSpec] = dspy.InputField(desc="The final tool set: the only tools the rewrite may call.")
    trajectory: Conversation = dspy.InputField(desc="The conversation to rewrite.")
    known_issues: list[str] = dspy.InputField(desc="Rule violations a checker found in the given conversation; fix each. Empty if none.")

    refined_trajectory: Conversation = dspy.OutputField(desc="The complete rewritten conversation: system prompt and rounds.")
    patterns_used: list[RefinementPattern] = dspy.OutputField(desc="The refinement patterns the rewritten conversation exercises.")
