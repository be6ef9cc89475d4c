"""Evaluate a program on a devset: the composite score, each metric part, each stage, each example."""

from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import dspy

from gem_synth.optimizers.metrics import Score, gem_metric, score_result
from gem_synth.optimizers.pool import never_resubmit


@dataclass
class ExampleScore:
    segment_id: str
    outcome: str
    stage: str
    score: float
    parts: dict[str, float]
    feedback: str


@dataclass
class Evaluation:
    score: float  # mean composite, in [0, 1]
    parts: dict[str, float] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    examples: list[ExampleScore] = field(default_factory=list)
    usage: list[dict[str, int]] = field(default_factory=list)  # per example, when the program was metered

    def metrics(self, prefix: str = "") -> dict[str, float]:
        out = {f"{prefix}score": self.score}
        out |= {f"{prefix}{k}": v for k, v in self.parts.items()}
        out |= {f"{prefix}outcome.{k}": v for k, v in self.outcomes.items()}
        return out

    def table(self) -> str:
        lines = [f"score        {self.score:.3f}  ({len(self.examples)} examples)"]
        lines += [f"  {k:<11}{v:.3f}" for k, v in self.parts.items()]
        lines.append("outcomes     " + ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items())))
        return "\n".join(lines)

    def rows(self) -> list[dict[str, Any]]:
        return [vars(e) for e in self.examples]


@dataclass
class Cost:
    """What a program spent on a devset, measured by DSPy's usage tracker (cache hits are free)."""

    lm_calls: int = 0  # paid
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_calls: int = 0  # answered from DSPy's cache: free
    seconds: float = 0.0
    accepted: int = 0

    def per_accepted(self) -> dict[str, float]:
        n = self.accepted or float("nan")
        return {"lm_calls": self.lm_calls / n, "prompt_tokens": self.prompt_tokens / n,
                "completion_tokens": self.completion_tokens / n, "seconds": self.seconds / n}

    def metrics(self, prefix: str = "") -> dict[str, float]:
        out = {f"{prefix}cost.{k}": float(v) for k, v in vars(self).items()}
        out |= {f"{prefix}cost_per_accepted.{k}": v for k, v in self.per_accepted().items() if self.accepted}
        return out


class _Metered(dspy.Module):
    """Runs a program under its own usage tracker, in whatever thread dspy.Evaluate uses
    (DSPy gives each worker thread a copy of the caller's tracker, so one outer tracker
    would see nothing)."""

    def __init__(self, program: dspy.Module):
        super().__init__()
        self.program = program

    def forward(self, **inputs):
        from gem_synth.backends.models import cache_hits
        from gem_synth.running.runner import usage_of

        hits = cache_hits()
        with dspy.track_usage() as tracker:
            out = self.program(**inputs)
        out.usage = usage_of(tracker, cache_hits() - hits)
        return out


def evaluate_with_cost(program: dspy.Module, devset: list[dspy.Example], num_threads: int = 4
                       ) -> tuple[Evaluation, Cost]:
    started = time.perf_counter()
    metered = _Metered(program)
    result = evaluate(metered, devset, num_threads)
    cost = Cost(seconds=time.perf_counter() - started, accepted=result.outcomes.get("accepted", 0))
    for usage in result.usage:
        cost.lm_calls += usage.get("lm_calls", 0)
        cost.prompt_tokens += usage.get("prompt_tokens", 0)
        cost.completion_tokens += usage.get("completion_tokens", 0)
        cost.cached_calls += usage.get("cached_calls", 0)
    return result, cost


def side_by_side(named: dict[str, tuple[Evaluation, Cost]]) -> str:
    """Quality and cost of several programs on the same devset, one column each."""
    names = list(named)
    rows = [("score", [e.score for e, _ in named.values()])]
    parts = sorted({k for e, _ in named.values() for k in e.parts})
    rows += [(k, [e.parts.get(k) for e, _ in named.values()]) for k in parts]
    rows += [("accepted", [c.accepted for _, c in named.values()])]
    for key in ("lm_calls", "prompt_tokens", "completion_tokens", "seconds"):
        rows.append((f"{key} / accepted", [c.per_accepted()[key] if c.accepted else None for _, c in named.values()]))
    width = max(14, *(len(n) for n in names)) + 2
    lines = [f"{'':<28}" + "".join(f"{n:>{width}}" for n in names)]
    for label, values in rows:
        cells = "".join(f"{'-' if v is None else (f'{v:.3f}' if isinstance(v, float) else v):>{width}}" for v in values)
        lines.append(f"{label:<28}{cells}")
    return "\n".join(lines)


def evaluate(program: dspy.Module, devset: list[dspy.Example], num_threads: int = 4) -> Evaluation:
    """Run the program on every example (through dspy.Evaluate, so MLflow autolog sees it)."""
    with never_resubmit():  # a slow example is waited for, never paid twice
        run = dspy.Evaluate(devset=devset, metric=gem_metric, num_threads=num_threads, display_progress=False,
                            failure_score=0.0, max_errors=len(devset) + 1)(program)
    scored: list[ExampleScore] = []
    parts: dict[str, list[float]] = {}
    outcomes: Counter[str] = Counter()
    usage: list[dict[str, int]] = []
    for example, prediction, _ in run.results:
        usage.append(getattr(prediction, "usage", None) or {})
        result = getattr(prediction, "result", None)
        if result is None:  # the program raised: dspy.Evaluate scored it 0
            outcomes["error"] += 1
            scored.append(ExampleScore(getattr(example, "segment_id", ""), "error", "run", 0.0, {}, "program raised"))
            continue
        s: Score = score_result(result, example)
        outcomes[result.outcome] += 1
        for k, v in s.parts.items():
            parts.setdefault(k, []).append(v)
        scored.append(ExampleScore(result.segment.id, result.outcome, result.stage, s.score, s.parts, s.text()))
    mean = statistics.fmean(e.score for e in scored) if scored else 0.0
    return Evaluation(score=round(mean, 4), parts={k: round(statistics.fmean(v), 4) for k, v in parts.items()},
                      outcomes=dict(outcomes), examples=scored, usage=usage)
