"""The Trajectory Synthesizer: GEM's whole pipeline in one call, text in, tools and trajectory out."""

import dspy

from gem_synth.signatures.conventions import instruction
from gem_synth.signatures.conversation import Conversation
from gem_synth.signatures.drafts import ToolSpec
from gem_synth.signatures.records import Pattern


class TrajectorySynthesis(dspy.Signature):
    __doc__ = instruction("""Turn a text into the tool set of the system it describes and one complete, realistic, hard tool-use conversation, in a single pass.

    First decide whether the text describes a multi-step operational procedure that a
    tool-using assistant could carry out or support (sign in, look up, fill in, submit,
    check status...). News, stories, opinion, definitions and lists of facts are not. If
    it is not, set `is_procedural` to false, leave the tools and the patterns empty and the
    conversation null.

    Otherwise design the tools and write the conversation.

    Tools: the API over the domain's database that the procedure needs; single-purpose
    read tools (look up, list, check status, read policy) and write tools (create, update,
    submit, cancel), each marked with its kind; snake_case verb_object names, unique;
    self-explanatory parameter names with precise types (integer vs number, booleans,
    arrays with element types, closed sets as enums, formats such as ISO 8601 dates in the
    description); required only when the call is meaningless without it; usually 8 to 12
    tools, covering every step of the procedure that acts on the system.

    Conversation, written in full, as a system prompt and rounds:
    1. `system`: the assistant's role, the current date, a database schema (the records
       behind the tools and their key fields) and the domain rules from the text
       (eligibility, limits, deadlines, uniqueness, what needs confirmation) as
       numbered rules.
    2. `rounds`: the user and the assistant taking turns (see Rounds below); every call
       uses a tool you designed above, with exactly its parameter names and types.
    3. The first round starts from the user's goal; the last ends with the assistant's
       reply once the goal is met, refused under a rule, or handed on.
    4. The assistant never invents a value; when a value is missing it asks. Before any
       write it states what it will do and gets the user's explicit confirmation.
    5. Tool results are realistic and consistent across the conversation; errors say what
       went wrong, never how to fix it. Some results are long lists with irrelevant
       records the assistant must sift.
    6. Make it hard: the user has a persona, at least one user turn carries several
       constraints at once, one or two pitfalls the assistant must avoid, and at least
       three of the patterns below, each in at most two places of the conversation. List
       each pattern the conversation exercises once in `patterns_used`.
    Size: aim for 7 to 9 rounds, 15 to 20 tool calls and 8 or more distinct tools called
    (about 45 to 55 messages in all: each call and its result count as two).

    Patterns:
    {pattern_definitions}

    {rounds}

    {grounding}

    {confirmation}

    {secrets}

    {persona}
    """)

    text: str = dspy.InputField(desc="A segment of a document: a how-to, help page, policy or manual excerpt.")

    is_procedural: bool = dspy.OutputField(desc="True if the text describes a multi-step procedure an assistant could support.")
    tools: list[ToolSpec] = dspy.OutputField(desc="The tool set; empty if not procedural.")
    trajectory: Conversation | None = dspy.OutputField(desc="The whole conversation: system prompt and rounds; null if not procedural.")
    patterns_used: list[Pattern] = dspy.OutputField(desc="The patterns the conversation exercises.")
