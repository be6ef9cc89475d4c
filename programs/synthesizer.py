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
from gem_synth.programs.toolset import normalise_tools
from gem_synth.signatures.drafts import tools_from_specs
from gem_synth.signatures.records import FilterLabels, SegmentResult, Trajectory

SYNTHESIZER = "synthesizer"


class Synthesize(dspy.Module):
    """One call: tools and conversation together.

    The conversation is in rounds, so ordering, ids and pairing are right by construction,
    but its calls cannot be decoded against the tool set: the tools are written in the same
    answer, and one JSON Schema cannot refer to values written earlier in it. Calls to
    tools it did not design are left to the rule validator (C001, C003-C005).
    """

    def __init__(self):
        super().__init__()
        self.predict = dspy.Predict(TrajectorySynthesis)

    def forward(self, text: str, config: dict | None = None) -> dspy.Prediction:
        out = self.predict(text=text, config=config or {})
        specs, notes = normalise_tools(list(out.tools))
        messages = out.trajectory.to_messages() if out.trajectory is not None else []
        trajectory = Trajectory(tools=tools_from_specs(specs), messages=messages)
        return dspy.Prediction(is_procedural=out.is_procedural, tool_specs=specs, trajectory=trajectory,
                               patterns=list(out.patterns_used), notes=notes)


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
        out = call_stage("synthesize", self.synthesize, self.stages.parse_retries, self.stages.transient_retries,
                         text=r.segment.text)
        r.labels = FilterLabels(is_procedural=out.is_procedural)
        r.notes += out.notes
        if not out.is_procedural:
            raise StageStop("filtered_out", "synthesize", "not a multi-step procedure")
        if not out.trajectory.messages:
            raise StageStop("parse_error", "synthesize", "procedural, but no conversation written")
        bad_tools = errors(list(check_tools(out.trajectory.tools)))
        if not out.trajectory.tools or bad_tools:
            r.violations = bad_tools
            raise StageStop("rule_violations", "synthesize",
                            "; ".join(v.line() for v in bad_tools) or "no tools designed")
        r.trajectory, r.patterns = out.trajectory, out.patterns
        finish(r, self.judge, self.stages)
