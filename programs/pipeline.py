"""The whole GEM dataflow as one DSPy program.

filter -> extract -> generate -> refine -> rule validation -> judge. The program never
raises for what a model does: a stage's unparseable output, an LM error, a rule
violation or a failed rubric ends the segment with a typed `SegmentResult` saying where
and why, keeping every intermediate output. Stages can be switched off for ablations
like the paper's (no refinement, no judge) or for corpora that need no filtering.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import dspy
from pydantic import ValidationError

from gem_synth.programs.patterns import verify
from gem_synth.programs.stages import Extract, Filter, Generate, Judge, Refine
from gem_synth.programs.validator import check_tools, errors, validate
from gem_synth.signatures.records import (
    FilterLabels,
    Outcome,
    Segment,
    SegmentResult,
    Stage,
    TrajectoryRecord,
    TrajectoryStats,
)
from dspy.utils.exceptions import (
    AdapterParseError,
    LMError,
    LMRateLimitError,
    LMServerError,
    LMTimeoutError,
    LMTransportError,
)


@dataclass(frozen=True)
class Stages:
    """Which optional stages run. Extraction, generation and validation always do."""

    filter: bool = True
    refine: bool = True
    judge: bool = True
    strict_grounding: bool = False  # reject on G001 warnings too, not only count them
    parse_retries: int = 1  # re-ask a stage whose answer does not parse (a fresh, uncached call)
    transient_retries: int = 0  # re-send a call refused as transient (429, 5xx, timeout); see call_stage

    @classmethod
    def parse(cls, spec: str) -> "Stages":
        """From a CLI list such as `filter,extract,generate,judge` (no `refine`)."""
        names = {s.strip() for s in spec.split(",") if s.strip()}
        known = {"filter", "extract", "generate", "refine", "validate", "judge"}
        unknown = names - known
        if unknown:
            raise ValueError(f"unknown stage(s) {sorted(unknown)}; choose from {sorted(known)}")
        return cls(filter="filter" in names, refine="refine" in names, judge="judge" in names)

    def names(self) -> list[str]:
        on = {"filter": self.filter, "extract": True, "generate": True, "refine": self.refine,
              "validate": True, "judge": self.judge}
        return [name for name, enabled in on.items() if enabled]


TRANSIENT = (LMRateLimitError, LMServerError, LMTimeoutError, LMTransportError)


class StageStop(Exception):
    def __init__(self, outcome: Outcome, stage: Stage, reason: str, retryable: bool = False):
        super().__init__(reason)
        self.outcome, self.stage, self.reason, self.retryable = outcome, stage, reason, retryable


def call_stage(stage: Stage, fn, retries: int = 0, transient_retries: int = 0, **kwargs) -> dspy.Prediction:
    """Run one stage, turning what a model can do wrong into a typed stop.

    An answer that does not parse is asked again up to `retries` times under a new
    `rollout_id` and temperature 1 (so not from the cache, and not the same greedy answer
    again): a glitch (a cut-off body, an empty choice) recovers, while a model that cannot
    produce the format costs one call more.
    A call refused as transient (rate limit, server error, timeout) is sent again up to
    `transient_retries` times, after its Retry-After (at most 30 s) or else 0.5, 1, 2 ... s
    (at most 8); under adaptive concurrency (backends/concurrency.py) the endpoint's limit
    has already shrunk, so the retry waits its turn instead of adding to a storm. Past that,
    the segment ends as a retryable `lm_error` that a rerun tries again.
    """
    attempt = refused = 0
    while True:
        try:
            # a re-ask is a fresh sample: a new rollout_id misses the cache, temperature 1 draws anew
            return fn(**kwargs, config={"rollout_id": attempt, "temperature": 1.0} if attempt else None)
        except (AdapterParseError, ValidationError) as exc:
            if attempt >= retries:
                raise StageStop("parse_error", stage, _one_line(exc)) from exc
            attempt += 1
        except LMError as exc:
            if isinstance(exc, TRANSIENT) and refused < transient_retries:
                retry_after = getattr(exc, "retry_after", None)
                time.sleep(min(30.0, float(retry_after)) if retry_after else min(8.0, 0.5 * 2 ** refused))
                refused += 1
                continue
            raise StageStop("lm_error", stage, f"{type(exc).__name__}: {_one_line(exc)}",
                            retryable=isinstance(exc, TRANSIENT)) from exc


def stopped_or_done(run, text: str, segment_id: str, source: str, first_stage: Stage) -> SegmentResult:
    """Run `run(result)`; a typed stop fills in outcome, stage and reason."""
    segment = Segment(id=segment_id or "segment", source=source, text=text)
    result = SegmentResult(segment=segment, outcome="accepted", stage=first_stage)
    try:
        run(result)
    except StageStop as stop:
        result.outcome, result.stage, result.reason = stop.outcome, stop.stage, stop.reason
        result.retryable = stop.retryable
    return result


def _one_line(exc: Exception, limit: int = 300) -> str:
    """The exception as one line of at most `limit` characters, cut at a word; for a parse error, what
    failed (DSPy appends the whole unparsed answer after "Adapter ... failed to parse", which is left out)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, AdapterParseError):
        text = text.split(" Adapter ", 1)[0]
        if getattr(exc, "lm_response", None) and len(str(exc.lm_response)) > 2000 and "Field required" in text:
            text += " (the answer may have been cut at the max_tokens limit)"
    if len(text) <= limit:
        return text
    return text[: limit - 4].rsplit(" ", 1)[0] + " ..."


class GEMPipeline(dspy.Module):
    """Text in, `dspy.Prediction(result=SegmentResult)` out."""

    def __init__(self, stages: Stages | None = None):
        super().__init__()
        self.stages = stages or Stages()
        self.filter = Filter()
        self.extract = Extract()
        self.generate = Generate()
        self.refine = Refine()
        self.judge = Judge()

    def forward(self, text: str, segment_id: str = "", source: str = "") -> dspy.Prediction:
        return dspy.Prediction(result=stopped_or_done(self._run, text, segment_id, source, "filter"))

    def _call(self, stage: Stage, fn, **kwargs) -> dspy.Prediction:
        return call_stage(stage, fn, self.stages.parse_retries, self.stages.transient_retries, **kwargs)

    def _run(self, r: SegmentResult) -> None:
        text = r.segment.text
        if self.stages.filter:
            r.labels = self._call("filter", self.filter, text=text).filter_labels
            if not r.labels.is_procedural:
                raise StageStop("filtered_out", "filter", f"not a multi-step procedure: {r.labels.summary}")
        else:
            r.labels = FilterLabels(is_procedural=True)

        extracted = self._call("extract", self.extract, text=text,
                               summary=r.labels.summary, domain=r.labels.domain)
        r.workflows = extracted.workflows
        r.notes += extracted.notes
        bad_tools = errors(list(check_tools(extracted.tools)))
        if not extracted.tools or bad_tools:
            r.violations = bad_tools
            reason = "; ".join(v.line() for v in bad_tools) or "no tools extracted"
            raise StageStop("rule_violations", "extract", reason)

        generated = self._call("generate", self.generate, text=text, workflows=r.workflows,
                               tool_specs=extracted.tool_specs)
        r.draft, r.draft_patterns = generated.trajectory, generated.patterns
        final, r.patterns = generated.trajectory, generated.patterns

        if self.stages.refine:
            # Errors only: a grounding warning is a heuristic's doubt, and handing it to the refiner as
            # a fault made it rewrite natural user turns into ISO dates and exact codes.
            issues = [v.line() for v in errors(validate(r.draft.to_openai()))]
            refined = self._call("refine", self.refine, text=text, workflows=r.workflows,
                                 tool_specs=extracted.tool_specs, conversation=generated.conversation,
                                 known_issues=issues)
            final, r.patterns = refined.trajectory, refined.patterns
            r.notes += refined.notes
        r.trajectory = final
        finish(r, self.judge, self.stages)


def finish(r: SegmentResult, judge: Judge, stages: Stages) -> None:
    """Validate `r.trajectory`, judge it if the judge is on, and make the record if it passes.

    Shared by every program that produces trajectories (the pipeline, the synthesizer), so
    all of them are held to the same rules and the same judge.
    """
    final = r.trajectory
    claimed = list(dict.fromkeys([*r.patterns, *r.draft_patterns]))
    messages = final.to_openai()["messages"]
    r.pattern_evidence = verify(claimed, messages)  # the detectors' share; the judge adds its own below
    r.patterns_verified = list(r.pattern_evidence)
    r.stage = "validate"
    r.violations = validate(final.to_openai())
    blocking = r.violations if stages.strict_grounding else errors(r.violations)
    if blocking:
        codes = sorted({v.code for v in blocking})
        raise StageStop("rule_violations", "validate", f"{len(blocking)} violation(s): {', '.join(codes)}")

    if stages.judge:
        r.judge = call_stage("judge", judge, stages.parse_retries, stages.transient_retries, trajectory=final,
                             claimed_patterns=claimed).verdicts
        r.stage = "judge"
        r.pattern_evidence = verify(claimed, messages,
                                    {p.pattern: p.message_indices for p in r.judge.patterns_exercised})
        r.patterns_verified = list(r.pattern_evidence)
        if not r.judge.passed:
            failed = [name for name, v in r.judge.rubrics().items() if not v.passed]
            raise StageStop("judge_failed", "judge", f"failed {', '.join(failed)}")

    r.record = TrajectoryRecord(
        id=r.segment.id, segment=r.segment, trajectory=final, workflows=r.workflows, labels=r.labels,
        patterns_claimed=claimed, patterns_verified=r.patterns_verified, pattern_evidence=r.pattern_evidence,
        stats=TrajectoryStats.of(final.tools, final.messages), judge=r.judge,
        warnings=r.violations,
    )


def run_segment(program: dspy.Module, segment: Segment) -> SegmentResult:
    result = program(text=segment.text, segment_id=segment.id, source=segment.source).result
    result.segment = segment
    if result.record is not None:
        result.record.segment = segment
    return result


