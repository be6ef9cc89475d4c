"""Quality metrics of synthesized trajectories, deterministic first, in DSPy's metric forms.

Every score is in [0, 1]. The composite (`gem_score`) is

    0.35 validity + 0.15 grounding + 0.20 complexity + 0.10 patterns + 0.20 judge

where the judge share goes to validity when the judge did not run, and
- validity   = 1 / (1 + sum of rule-violation weights)            (programs.validator codes)
- grounding  = share of tool calls whose every argument value appears earlier (G001)
- complexity = mean over messages, distinct tools used, tool calls and user turns of
               min(1, value / target); targets default to the paper's post-refinement means
- patterns   = distinct GEM patterns exercised / 3, capped at 1 (GEM asks for >= 3 of 5)
- judge      = share of the three rubrics (R1, R2, R3) passed.
A segment that ended before it had a trajectory scores 0, except that a correct
rejection scores 1 when the example is labelled `is_procedural=False`; a wrong filter
decision on a labelled example scores 0.

`gem_metric(example, prediction, trace=None)` is the form DSPy optimizers and
`dspy.Evaluate` call; `gem_feedback_metric` is GEPA's five-argument form returning the
score with textual feedback that lists what cost points.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dspy

from gem_synth.programs.validator import check_tools, validate
from gem_synth.signatures.records import SegmentResult, Trajectory, TrajectoryStats

WEIGHTS = {"O": 1.0, "R": 1.0, "M": 1.0, "E": 1.0, "C001": 1.0, "C002": 1.0, "C": 0.5, "T": 0.5, "G": 0.0}
SHARES = {"validity": 0.35, "grounding": 0.15, "complexity": 0.20, "patterns": 0.10, "judge": 0.20}


@dataclass(frozen=True)
class Targets:
    """Complexity targets: the paper's means after refinement; user turns are our estimate."""

    messages: float = 46.1
    distinct_tools_used: float = 8.6
    tool_calls: float = 16.3
    user_turns: float = 10.0


@dataclass
class Score:
    score: float
    parts: dict[str, float] = field(default_factory=dict)
    feedback: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "\n".join(self.feedback) or "No problems found."


def _weight(code: str) -> float:
    return WEIGHTS.get(code, WEIGHTS.get(code[0], 1.0))


def validity(trajectory: Trajectory) -> tuple[float, list[str]]:
    violations = [v for v in validate(trajectory.to_openai()) if v.severity == "error"]
    return 1.0 / (1.0 + sum(_weight(v.code) for v in violations)), [v.line() for v in violations]


def grounding(trajectory: Trajectory) -> tuple[float, list[str]]:
    stats = TrajectoryStats.of(trajectory.tools, trajectory.messages)
    if stats.tool_calls == 0:
        return 0.0, ["no tool calls"]
    warnings = [v for v in validate(trajectory.to_openai()) if v.code == "G001"]
    ungrounded_calls = {(v.message_index, v.reason.split(".")[0]) for v in warnings}
    return 1.0 - min(1.0, len(ungrounded_calls) / stats.tool_calls), [v.line() for v in warnings]


def complexity(trajectory: Trajectory, targets: Targets = Targets()) -> tuple[float, list[str]]:
    stats = TrajectoryStats.of(trajectory.tools, trajectory.messages)
    ratios, notes = [], []
    for name in ("messages", "distinct_tools_used", "tool_calls", "user_turns"):
        value, target = getattr(stats, name), getattr(targets, name)
        ratios.append(min(1.0, value / target))
        if value < target:
            notes.append(f"{name} {value} below target {target:g}")
    return sum(ratios) / len(ratios), notes


def pattern_coverage(patterns: list[str], needed: int = 3) -> tuple[float, list[str]]:
    distinct = set(patterns)
    notes = []
    if len(distinct) < needed:
        notes.append(f"exercises {len(distinct)} pattern(s) ({', '.join(sorted(distinct)) or 'none'}); needs {needed}")
    return min(1.0, len(distinct) / needed), notes


def extraction_score(tool_specs_or_tools, workflows) -> tuple[float, list[str]]:
    """Tools valid, and every workflow step names tools that exist (steps without tools are user-only)."""
    tools = [t.to_tool() if hasattr(t, "to_tool") else t for t in tool_specs_or_tools]
    notes = [v.line() for v in check_tools(tools) if v.severity == "error"]
    valid = 1.0 if tools and not notes else 0.0
    names = {t.name for t in tools}
    steps = [s for w in workflows for s in w.steps]
    covered = [s for s in steps if s.tools and set(s.tools) <= names]
    notes += [f"step {s.name} names unknown tool(s) {sorted(set(s.tools) - names)}" for s in steps
              if set(s.tools) - names]
    coverage = len(covered) / len(steps) if steps else 0.0
    return 0.5 * valid + 0.5 * coverage, notes


def score_result(result: SegmentResult, example=None, targets: Targets = Targets()) -> Score:
    label = getattr(example, "is_procedural", None) if example is not None else None
    if result.outcome == "filtered_out":
        if label is False:
            return Score(1.0, {"filter": 1.0}, [])
        if label is None:  # no label: the decision cannot be checked, but nothing was produced to score
            return Score(0.0, {}, [f"filtered out an unlabelled text (label it `is_procedural` to score the "
                                   f"filter): {result.reason}"])
        return Score(0.0, {"filter": 0.0}, [f"filtered out a procedural text: {result.reason}"])
    if label is False:
        return Score(0.0, {"filter": 0.0}, ["kept a text labelled non-procedural"])
    if result.trajectory is None:
        return Score(0.0, {}, [f"stopped at {result.stage}: {result.outcome}: {result.reason}"])

    traj = result.trajectory
    parts, feedback = {}, []
    for name, (value, notes) in {
        "validity": validity(traj),
        "grounding": grounding(traj),
        "complexity": complexity(traj, targets),
        "patterns": pattern_coverage(result.patterns_verified),  # verified, never merely claimed
    }.items():
        parts[name] = value
        feedback += [f"{name}: {n}" for n in notes[:5]]
    shares = dict(SHARES)
    if result.judge is not None:
        verdicts = result.judge.rubrics()
        parts["judge"] = sum(v.passed for v in verdicts.values()) / len(verdicts)
        feedback += [f"judge: {name} failed: {v.reason}" for name, v in verdicts.items() if not v.passed]
    else:
        shares["validity"] += shares.pop("judge")
    total = sum(shares[k] * parts[k] for k in shares)
    return Score(round(total, 4), parts, feedback)


def gem_metric(example, prediction, trace=None) -> float:
    return score_result(prediction.result, example).score


def gem_feedback_metric(gold, pred, trace=None, pred_name=None, pred_trace=None) -> dspy.Prediction:
    scored = score_result(pred.result, gold)
    return dspy.Prediction(score=scored.score, feedback=scored.text())


def filter_agreement(example, prediction, trace=None) -> float:
    """Per-stage metric for the filter alone: the procedural decision, and the category when labelled."""
    labels = prediction.filter_labels
    score = float(labels.is_procedural == example.is_procedural)
    if getattr(example, "task_category", None):
        score = 0.75 * score + 0.25 * float(labels.task_category == example.task_category)
    return score


def extraction_metric(example, prediction, trace=None) -> float:
    """Per-stage metric for extraction alone."""
    return extraction_score(prediction.tool_specs, prediction.workflows)[0]
