"""Compiling the GEM program with DSPy teleprompters against the quality metrics.

`compile_program` optimizes the whole pipeline or one named stage: the other stages are
frozen (DSPy skips `_compiled` sub-modules), so only that stage's instruction and demos
change while the score is still measured on the whole pipeline's output.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import dspy

from optimizers.metrics import gem_feedback_metric, gem_metric
from programs.pipeline import GEMPipeline

OPTIMIZERS = ("bootstrap", "random-search", "mipro", "gepa", "simba")
STAGE_NAMES = ("filter", "extract", "generate", "refine", "judge")


@dataclass(frozen=True)
class Budget:
    max_demos: int = 2  # bootstrapped demos per predictor
    max_labeled_demos: int = 0
    threshold: float = 0.7  # a bootstrapped trace counts as a success only at this score or above
    candidates: int = 4  # candidate programs (random search), instructions (MIPROv2, SIMBA)
    trials: int = 6  # MIPROv2 trials; SIMBA steps
    metric_calls: int = 60  # GEPA budget
    batch_size: int = 8  # SIMBA and MIPROv2 minibatches
    threads: int = 4
    seed: int = 0

    def params(self) -> dict[str, Any]:
        return {f"budget.{k}": v for k, v in asdict(self).items()}


def freeze_except(program: GEMPipeline, stage: str | None) -> GEMPipeline:
    """Mark every stage but `stage` compiled, so optimizers leave it as it is."""
    if stage is None:
        return program
    if stage not in STAGE_NAMES:
        raise ValueError(f"unknown stage {stage!r}; choose from {', '.join(STAGE_NAMES)}")
    for name in STAGE_NAMES:
        getattr(program, name)._compiled = name != stage
    return program


def make_optimizer(name: str, budget: Budget, reflection_lm: dspy.LM | None = None):
    if name == "bootstrap":
        return dspy.BootstrapFewShot(metric=gem_metric, metric_threshold=budget.threshold,
                                     max_bootstrapped_demos=budget.max_demos,
                                     max_labeled_demos=budget.max_labeled_demos)
    if name == "random-search":
        return dspy.BootstrapFewShotWithRandomSearch(
            metric=gem_metric, metric_threshold=budget.threshold, max_bootstrapped_demos=budget.max_demos,
            max_labeled_demos=budget.max_labeled_demos, num_candidate_programs=budget.candidates,
            num_threads=budget.threads)
    if name == "mipro":
        return dspy.MIPROv2(metric=gem_metric, auto=None, num_candidates=budget.candidates,
                            max_bootstrapped_demos=budget.max_demos, max_labeled_demos=budget.max_labeled_demos,
                            num_threads=budget.threads, seed=budget.seed, metric_threshold=budget.threshold,
                            verbose=False)
    if name == "gepa":
        return dspy.GEPA(metric=gem_feedback_metric, max_metric_calls=budget.metric_calls,
                         reflection_lm=reflection_lm or dspy.settings.lm, num_threads=budget.threads,
                         seed=budget.seed, reflection_minibatch_size=3)
    if name == "simba":
        return dspy.SIMBA(metric=gem_metric, bsize=budget.batch_size, num_candidates=budget.candidates,
                          max_steps=budget.trials, max_demos=budget.max_demos, num_threads=budget.threads)
    raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")


def compile_program(program: GEMPipeline, optimizer: str, trainset: list[dspy.Example],
                    valset: list[dspy.Example] | None = None, budget: Budget = Budget(), stage: str | None = None,
                    reflection_lm: dspy.LM | None = None) -> GEMPipeline:
    """A compiled copy of `program`; `program` itself is left untouched."""
    student = freeze_except(program.deepcopy(), stage)
    teleprompter = make_optimizer(optimizer, budget, reflection_lm)
    if optimizer == "bootstrap":
        compiled = teleprompter.compile(student, trainset=trainset)
    elif optimizer == "mipro":
        compiled = teleprompter.compile(student, trainset=trainset, valset=valset or trainset,
                                        num_trials=budget.trials, minibatch=len(valset or trainset) > budget.batch_size,
                                        minibatch_size=budget.batch_size)
    elif optimizer == "simba":
        compiled = teleprompter.compile(student, trainset=trainset, seed=budget.seed)
    else:
        compiled = teleprompter.compile(student, trainset=trainset, valset=valset or trainset)
    for name in STAGE_NAMES:  # thaw, so a later compile may touch any stage again
        getattr(compiled, name)._compiled = False
    return compiled


def prompts(program: dspy.Module) -> dict[str, dict[str, Any]]:
    """Each predictor's instruction and demos: what a compile changes, and what `compare` shows."""
    return {name: {"instructions": p.signature.instructions, "demos": len(p.demos)}
            for name, p in program.named_predictors()}
