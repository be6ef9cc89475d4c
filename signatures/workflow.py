"""The abstract workflow mined from a text: steps, their dependencies, branches and limits.

It is the bridge between the prose and the tools: each step names the tools that carry
it out, `depends_on` gives the execution graph, branches give the conditional paths and
constraints carry the domain rules ("one active claim per visit") that the generated
conversation must respect.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class WorkflowStep(BaseModel):
    name: str = Field(description="Short snake_case step name, e.g. `verify_identity`.")
    description: str = Field(description="What happens in this step, in one sentence.")
    tools: list[str] = Field(default_factory=list, description="Names of the tools that carry out this step.")
    depends_on: list[str] = Field(default_factory=list, description="Names of the steps that must finish first.")


class BranchTarget(BaseModel):
    """Where a branch leads: a step of this workflow, another workflow, or an end of the procedure."""

    kind: Literal["step", "workflow", "refuse", "stop", "escalate"] = Field(
        description="`step`: go to a step of this workflow; `workflow`: continue in another workflow; "
                    "`refuse`: the request is declined under a rule; `stop`: the procedure ends here "
                    "(done or nothing more to do); `escalate`: handed to a person (a supervisor, an office)."
    )
    name: str = Field(default="", description="The step's name for `step`, the workflow's name for `workflow`; "
                                              "empty for `refuse`, `stop` and `escalate`.")


class Branch(BaseModel):
    at_step: str = Field(description="The step whose outcome is tested.")
    condition: str = Field(description="The condition, e.g. `claim amount exceeds 500 USD`.")
    then: BranchTarget = Field(description="Where the flow goes when the condition holds.")
    otherwise: BranchTarget | None = Field(
        default=None, description="Where it goes when the condition does not hold; null if the flow just continues."
    )


class Constraint(BaseModel):
    kind: Literal["uniqueness", "limit", "precondition", "deadline", "eligibility", "other"]
    description: str = Field(description="The rule as stated or implied by the text, e.g. `one active claim per visit`.")


class Workflow(BaseModel):
    name: str = Field(description="snake_case name of the procedure, e.g. `file_reimbursement_claim`.")
    goal: str = Field(description="What a user achieves by completing it.")
    steps: list[WorkflowStep]
    branches: list[Branch] = Field(default_factory=list)
    constraints: list[Constraint] = Field(default_factory=list)

    def graph(self) -> str:
        """The execution graph in GEM's notation, e.g. `(login) -> (search_items) -> (edit_item)`.

        Steps are listed in dependency order; a step with several prerequisites shows them
        joined by `+`.
        """
        order = self.topological_order()
        by_name = {s.name: s for s in self.steps}
        parts = []
        for name in order:
            deps = by_name[name].depends_on
            prefix = f"[{' + '.join(deps)}] " if len(deps) > 1 else ""
            parts.append(f"{prefix}({name})")
        return " -> ".join(parts)

    def topological_order(self) -> list[str]:
        """Step names with every step after its prerequisites; unknown or cyclic links are ignored."""
        names = [s.name for s in self.steps]
        deps = {s.name: [d for d in s.depends_on if d in names and d != s.name] for s in self.steps}
        done: list[str] = []
        visiting: set[str] = set()

        def visit(name: str) -> None:
            if name in done or name in visiting:
                return
            visiting.add(name)
            for d in deps[name]:
                visit(d)
            visiting.discard(name)
            done.append(name)

        for name in names:
            visit(name)
        return done
