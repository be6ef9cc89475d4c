"""The Trajectory Synthesizer: one LM call from text to tools and trajectory.

GEM distils its multi-stage pipeline into a single generator because the pipeline costs
several long LM calls per text. Here the single call is a DSPy module over
`TrajectorySynthesis`, held to exactly the same rule validator and judge as the
pipeline (`programs.pipeline.finish`) and answering with the same `SegmentResult`, so
the run loop, the metrics and the optimizers treat both alike.
"""

from __future__ import annotations

import dspy

from gem_synth.programs.pipeline import Stages, StageStop, call_stage, finish, stopped_or_done
from gem_synth.programs.stages import Judge
from gem_synth.programs.validator import check_tools, errors
from gem_synth.signatures import TrajectorySynthesis
from gem_synth.signatures.drafts import messages_from_turns, tools_from_specs
from gem_synth.signatures.records import FilterLabels, SegmentResult, Trajectory

SYNTHESIZER = "synthesizer"


class Synthesize(dspy.Module):
    def __init__(self):
        super().__init__()
        self.predict = dspy.Predict(TrajectorySynthesis)

    def forward(self, text: str, config: dict | None = None) -> dspy.Prediction:
        out = self.predict(text=text, config=config or {})
        trajectory = Trajectory(tools=tools_from_specs(out.tools), messages=messages_from_turns(out.trajectory))
        return dspy.Prediction(is_procedural=out.is_procedural, tool_specs=list(out.tools),
                               trajectory=trajectory, patterns=list(out.patterns_used))


class Synthesizer(dspy.Module):
    """Text in, `dspy.Prediction(result=SegmentResult)` out, in one call (plus the judge if on)."""

    def __init__(self, stages: Stages | None = None):
        super().__init__()
        self.stages = stages or Stages()
        self.synthesize = Synthesize()
        self.judge = Judge()

    def forward(self, text: str, segment_id: str = "", source: str = "", config: dict | None = None) -> dspy.Prediction:
        return dspy.Prediction(result=stopped_or_done(self._run, text, segment_id, source, "synthesize"))

    def _run(self, r: SegmentResult) -> None:
        out = call_stage("synthesize", self.synthesize, self.stages.parse_retries, text=r.segment.text)
        r.labels = FilterLabels(is_procedural=out.is_procedural)
        if not out.is_procedural:
            raise StageStop("filtered_out", "synthesize", "not a multi-step procedure")
        bad_tools = errors(list(check_tools(out.trajectory.tools)))
        if not out.trajectory.tools or bad_tools:
            r.violations = bad_tools
            raise StageStop("rule_violations", "synthesize",
                            "; ".join(v.line() for v in bad_tools) or "no tools designed")
        r.trajectory, r.patterns = out.trajectory, out.patterns
        finish(r, self.judge, self.stages)
