"""Stage 2 of GEM: workflow and tool extraction."""

import dspy

from gem_synth.signatures.conventions import instruction
from gem_synth.signatures.drafts import ToolSpec
from gem_synth.signatures.workflow import Workflow


class WorkflowExtraction(dspy.Signature):
    __doc__ = instruction("""Extract the implicit workflows of a procedural text and design the tools an agent needs to carry them out.

    Workflows. Abstract every procedure the text describes into a workflow of its own:
    one workflow per distinct procedure, as many as the text has (often one to three).
    - ordered steps, each a single action, named in snake_case, with the steps it depends
      on (`depends_on`) so that the steps form an execution graph such as
      (login) -> (search_items) -> (edit_item);
    - conditional branches where the text says what happens if something holds or not
      (e.g. "if the amount exceeds 500 USD, a supervisor must approve"): each leads to a
      step of the workflow, to another workflow, or ends the procedure (`refuse`, `stop`,
      `escalate`);
    - constraints: uniqueness and limit rules ("one active claim per visit", "at most
      three changes per booking"), preconditions, deadlines and eligibility rules. Take
      them from the text; where the text clearly implies a rule, state it explicitly.
    Do not invent steps the text does not support, but do make implicit steps explicit
    (identifying the user before changing their account, checking status before acting).

    Tools. Design the tool set of the system behind the workflows, as if it were an API
    over the domain's database:
    - single-purpose functions: one tool does one thing (look up, list, create, update,
      cancel, submit...), never a tool that runs a whole workflow;
    - both read tools (look up records, check status, list options, read policy) and
      write tools (create, update, submit, cancel, delete); mark each with its kind;
    - snake_case verb_object names (`get_claim_status`, `submit_claim`), unique in the set;
    - self-explanatory parameter names (`claim_id`, `visit_date`, not `id`, `d`) with
      precise types: integer vs number, boolean flags, arrays with their element type,
      closed sets as `enum`, formats (ISO 8601 dates, currency codes) in the description;
      mark a parameter required only when the call is meaningless without it;
    - every workflow step that acts on the system is covered by at least one tool, and
      every step's `tools` list names tools from this set exactly; steps done only by the
      user in the real world (signing a paper form, visiting an office) get no tool;
    - a tool that starts something the user completes elsewhere (a verification link, a
      code sent by text, a form to sign) has a read tool that checks whether it was
      completed; files the user provides (receipts, photos, scans) come in through an
      upload or list tool that gives their ids, so no user ever types a file id;
    - size: enough tools for every step of every workflow, typically 6 to 12 for a text,
      since the conversations written later call 8 or more distinct tools.

    {secrets}
    """)

    text: str = dspy.InputField(desc="A segment that describes a multi-step procedure.")
    summary: str = dspy.InputField(desc="One-line summary of the segment from the relevance filter.")
    domain: str = dspy.InputField(desc="Domain label from the relevance filter.")

    workflows: list[Workflow] = dspy.OutputField(desc="The workflows the text describes, one per distinct procedure.")
    tools: list[ToolSpec] = dspy.OutputField(desc="The tool set that carries out every workflow step acting on the system.")
