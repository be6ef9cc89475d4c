"""Evaluate a program on a devset: the composite score, each metric part, each stage, each example."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import dspy

from optimizers.metrics import Score, gem_metric, score_result


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


def evaluate(program: dspy.Module, devset: list[dspy.Example], num_threads: int = 4) -> Evaluation:
    """Run the program on every example (through dspy.Evaluate, so MLflow autolog sees it)."""
    run = dspy.Evaluate(devset=devset, metric=gem_metric, num_threads=num_threads, display_progress=False,
                        failure_score=0.0, max_errors=len(devset) + 1)(program)
    scored: list[ExampleScore] = []
    parts: dict[str, list[float]] = {}
    outcomes: Counter[str] = Counter()
    for example, prediction, _ in run.results:
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
                      outcomes=dict(outcomes), examples=scored)
