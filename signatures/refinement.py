"""Stage 4 of GEM: complexity refinement."""

import dspy

from gem_synth.signatures.drafts import ToolSpec, Turn
from gem_synth.signatures.conventions import instruction
from gem_synth.signatures.records import RefinementPattern
from gem_synth.signatures.workflow import Workflow


class ComplexityRefinement(dspy.Signature):
    __doc__ = instruction("""Rewrite a tool-use conversation to be harder, longer and more realistic, extending the tool set where needed.

    Keep the domain, the source text's rules and the user's underlying goal, and return
    the complete rewritten conversation and the complete tool set (the existing tools,
    possibly reworded, plus any you add).

    Make it harder:
    - System prompt: add a database schema (the tables or records behind the tools, with
      their key fields) and stricter, more detailed domain rules.
    - Give the user a persona (who they are, what they know, how they talk) and let it
      show in their turns only (see below).
    - At least one user turn carries several constraints at once (dates, budget, limits,
      preferences) that the assistant must all honour.
    - At least one turn needs reasoning over long context: a tool result padded with
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
    - Add or rewrite tools when the harder conversation needs them (same rules: single
      purpose, read and write tools, snake_case names, precise parameter types).
    - Size: aim for about 40 to 50 turns, 8 or more distinct tools called and 15 or
      more tool calls.

    Keep every rule of a valid conversation, and fix each problem listed in
    `known_issues` (found by a rule checker in the conversation you are given):
    - the first turn is the only `system` turn; the last turn is an assistant text turn;
    - every call is answered immediately by one `tool` turn with its id; a tool turn is
      never followed by a user turn;
    - calls use only tools in the returned tool set, with argument names and types as
      defined and required arguments present, arguments as a JSON object string;
    - the assistant never invents a value, and writes only after the user's explicit
      confirmation;
    - tool errors say what went wrong, never how to fix it; values stay consistent
      across turns.

    {tool_call_turns}

    {grounding}

    {confirmation}

    {secrets}

    {persona}
    """)

    text: str = dspy.InputField(desc="The source text of the domain.")
    workflows: list[Workflow] = dspy.InputField(desc="The workflows extracted from the text.")
    tools: list[ToolSpec] = dspy.InputField(desc="The current tool set.")
    trajectory: list[Turn] = dspy.InputField(desc="The conversation to rewrite.")
    known_issues: list[str] = dspy.InputField(desc="Rule violations a checker found in the given conversation; fix each. Empty if none.")

    refined_tools: list[ToolSpec] = dspy.OutputField(desc="The complete tool set after refinement.")
    refined_trajectory: list[Turn] = dspy.OutputField(desc="The complete rewritten conversation, system turn first.")
    patterns_used: list[RefinementPattern] = dspy.OutputField(desc="The refinement patterns the rewritten conversation exercises.")
