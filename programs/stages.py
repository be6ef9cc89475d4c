"""One DSPy module per GEM stage.

Each wraps a predictor over its signature, so optimizers see the predictors
`filter.predict`, `extract.predict`, `generate.predict`, `refine.extend`,
`refine.predict` and `judge.predict`, and a compiled state saved from the pipeline loads
stage by stage. Stages that write a conversation narrow its type to the segment's tool
set per call (`over_tools`), so the signature stays the declarative "what" and the
module supplies the schema.
Each returns canonical types (OpenAI tools and messages) next to the raw prediction.
`config` goes to the LM call (the pipeline passes a `rollout_id` to re-ask after an
unparseable answer without hitting the cached one).
"""

from __future__ import annotations

import dspy

from gem_synth.programs.toolset import normalise_tools
from gem_synth.signatures import (
    ComplexityRefinement,
    HallucinationJudge,
    RelevanceFilter,
    ToolExtension,
    TrajectoryGeneration,
    WorkflowExtraction,
)
from gem_synth.signatures.conversation import Conversation, conversation_over
from gem_synth.signatures.drafts import ToolSpec, tools_from_specs
from gem_synth.signatures.records import FilterLabels, JudgeVerdicts, Trajectory
from gem_synth.signatures.workflow import Workflow


class Filter(dspy.Module):
    def __init__(self):
        super().__init__()
        self.predict = dspy.Predict(RelevanceFilter)

    def forward(self, text: str, config: dict | None = None) -> dspy.Prediction:
        out = self.predict(text=text, config=config or {})
        labels = FilterLabels(is_procedural=out.is_procedural, summary=out.summary, domain=out.domain,
                              platform=out.platform, task_category=out.task_category)
        return dspy.Prediction(filter_labels=labels)


def over_tools(predict: dspy.Predict, field: str, specs: list[ToolSpec]) -> type[dspy.Signature]:
    """`predict`'s signature (as compiled: instruction and all) with `field` narrowed to calls to `specs`.

    The narrowed type is what the adapter sends as the per-segment `response_format` and what
    the answer is parsed with, so a call outside the tool set cannot be decoded on a
    constrained backend and does not parse on any other (signatures/conversation.py).
    """
    narrowed = predict.signature.with_updated_fields(field, type_=conversation_over(specs))
    narrowed.__name__ = narrowed.__qualname__ = predict.signature.__name__  # the schema's name on the wire
    return narrowed


class Extract(dspy.Module):
    """Workflows and tools of a text; the tool set normalised (toolset.normalise_tools), with notes on what changed."""

    def __init__(self):
        super().__init__()
        self.predict = dspy.Predict(WorkflowExtraction)

    def forward(self, text: str, summary: str, domain: str, config: dict | None = None) -> dspy.Prediction:
        out = self.predict(text=text, summary=summary, domain=domain, config=config or {})
        specs, notes = normalise_tools(list(out.tools))
        return dspy.Prediction(workflows=list(out.workflows), tool_specs=specs, tools=tools_from_specs(specs),
                               notes=notes)


class Generate(dspy.Module):
    """A draft conversation whose every call is decoded against the extracted tools."""

    def __init__(self):
        super().__init__()
        self.predict = dspy.Predict(TrajectoryGeneration)

    def forward(self, text: str, workflows: list[Workflow], tool_specs: list[ToolSpec], config: dict | None = None) -> dspy.Prediction:
        out = self.predict(signature=over_tools(self.predict, "trajectory", tool_specs), text=text,
                           workflows=workflows, tools=tool_specs, config=config or {})
        trajectory = Trajectory(tools=tools_from_specs(tool_specs), messages=out.trajectory.to_messages())
        return dspy.Prediction(conversation=out.trajectory.plain(), trajectory=trajectory,
                               patterns=list(out.patterns_used))


class Refine(dspy.Module):
    """GEM's complexity refinement: `extend` adds the tools a harder conversation needs, then `predict`
    rewrites the conversation against the extended set (its calls decoded against it)."""

    def __init__(self):
        super().__init__()
        self.extend = dspy.Predict(ToolExtension)
        self.predict = dspy.Predict(ComplexityRefinement)

    def forward(self, text: str, workflows: list[Workflow], tool_specs: list[ToolSpec], conversation: Conversation,
                known_issues: list[str], config: dict | None = None) -> dspy.Prediction:
        added = self.extend(text=text, workflows=workflows, tools=tool_specs, trajectory=conversation,
                            config=config or {})
        specs, notes = normalise_tools([*tool_specs, *added.new_tools])
        out = self.predict(signature=over_tools(self.predict, "refined_trajectory", specs), text=text,
                           workflows=workflows, tools=specs, trajectory=conversation, known_issues=known_issues,
                           config=config or {})
        trajectory = Trajectory(tools=tools_from_specs(specs), messages=out.refined_trajectory.to_messages())
        return dspy.Prediction(tool_specs=specs, conversation=out.refined_trajectory.plain(), trajectory=trajectory,
                               patterns=list(out.patterns_used), notes=notes)


class Judge(dspy.Module):
    def __init__(self):
        super().__init__()
        self.predict = dspy.Predict(HallucinationJudge)

    def forward(self, trajectory: Trajectory, claimed_patterns: list[str] | None = None,
                config: dict | None = None) -> dspy.Prediction:
        out = self.predict(tools=trajectory.tools, conversation=trajectory.transcript(),
                           claimed_patterns=list(claimed_patterns or []), config=config or {})
        claimed = set(claimed_patterns or [])
        verdicts = JudgeVerdicts(tool_call_hallucination=out.tool_call_hallucination,
                                 capability_hallucination=out.capability_hallucination,
                                 context_hallucination=out.context_hallucination,
                                 patterns_exercised=[p for p in out.patterns_exercised if p.pattern in claimed])
        return dspy.Prediction(verdicts=verdicts)
