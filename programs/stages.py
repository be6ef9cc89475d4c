"""One DSPy module per GEM stage.

Each wraps one predictor over its signature, so optimizers see the predictors
`filter.predict`, `extract.predict`, `generate.predict`, `refine.predict` and
`judge.predict`, and a compiled state saved from the pipeline loads stage by stage.
Each returns canonical types (OpenAI tools and messages) next to the raw prediction.
`config` goes to the LM call (the pipeline passes a `rollout_id` to re-ask after an
unparseable answer without hitting the cached one).
"""

from __future__ import annotations

import dspy

from gem_synth.signatures import (
    ComplexityRefinement,
    HallucinationJudge,
    RelevanceFilter,
    TrajectoryGeneration,
    WorkflowExtraction,
)
from gem_synth.signatures.drafts import ToolSpec, Turn, messages_from_turns, tools_from_specs
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


class Extract(dspy.Module):
    def __init__(self):
        super().__init__()
        self.predict = dspy.Predict(WorkflowExtraction)

    def forward(self, text: str, summary: str, domain: str, config: dict | None = None) -> dspy.Prediction:
        out = self.predict(text=text, summary=summary, domain=domain, config=config or {})
        return dspy.Prediction(workflows=list(out.workflows), tool_specs=list(out.tools),
                               tools=tools_from_specs(out.tools))


class Generate(dspy.Module):
    def __init__(self):
        super().__init__()
        self.predict = dspy.Predict(TrajectoryGeneration)

    def forward(self, text: str, workflows: list[Workflow], tool_specs: list[ToolSpec], config: dict | None = None) -> dspy.Prediction:
        out = self.predict(text=text, workflows=workflows, tools=tool_specs, config=config or {})
        trajectory = Trajectory(tools=tools_from_specs(tool_specs), messages=messages_from_turns(out.trajectory))
        return dspy.Prediction(turns=list(out.trajectory), trajectory=trajectory, patterns=list(out.patterns_used))


class Refine(dspy.Module):
    def __init__(self):
        super().__init__()
        self.predict = dspy.Predict(ComplexityRefinement)

    def forward(self, text: str, workflows: list[Workflow], tool_specs: list[ToolSpec], turns: list[Turn],
                known_issues: list[str], config: dict | None = None) -> dspy.Prediction:
        out = self.predict(text=text, workflows=workflows, tools=tool_specs, trajectory=turns,
                           known_issues=known_issues, config=config or {})
        trajectory = Trajectory(tools=tools_from_specs(out.refined_tools),
                                messages=messages_from_turns(out.refined_trajectory))
        return dspy.Prediction(tool_specs=list(out.refined_tools), turns=list(out.refined_trajectory),
                               trajectory=trajectory, patterns=list(out.patterns_used))


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
