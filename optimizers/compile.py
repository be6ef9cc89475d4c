"""Compiling the GEM program with DSPy teleprompters against the quality metrics.

`compile_program` optimizes the whole pipeline or one named stage. The filter and the
extractor can be scored alone (filter agreement with `is_procedural` labels; valid tools
covering every workflow step), so they are compiled as modules of their own, at a
fraction of the cost. Any other stage is compiled inside the pipeline with the other
stages frozen (DSPy skips `_compiled` sub-modules): only its instruction and demos
change, while the score is measured on the whole pipeline's output.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import dspy

from gem_synth.optimizers.metrics import extraction_metric, filter_agreement, gem_feedback_metric, gem_metric
from gem_synth.optimizers.pool import never_resubmit
from gem_synth.programs.pipeline import GEMPipeline

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


def _with_feedback(metric):
    """GEPA's five-argument form for a plain score metric."""
    def feedback(gold, pred, trace=None, pred_name=None, pred_trace=None):
        score = metric(gold, pred, trace)
        return dspy.Prediction(score=score, feedback=f"score {score:.2f}")
    return feedback


STAGE_ALONE = {"filter": filter_agreement, "extract": extraction_metric}


def make_optimizer(name: str, budget: Budget, reflection_lm: dspy.LM | None = None, metric=gem_metric,
                   feedback_metric=gem_feedback_metric):
    if name == "bootstrap":
        return dspy.BootstrapFewShot(metric=metric, metric_threshold=budget.threshold,
                                     max_bootstrapped_demos=budget.max_demos,
                                     max_labeled_demos=budget.max_labeled_demos)
    if name == "random-search":
        return dspy.BootstrapFewShotWithRandomSearch(
            metric=metric, metric_threshold=budget.threshold, max_bootstrapped_demos=budget.max_demos,
            max_labeled_demos=budget.max_labeled_demos, num_candidate_programs=budget.candidates,
            num_threads=budget.threads)
    if name == "mipro":
        return dspy.MIPROv2(metric=metric, auto=None, num_candidates=budget.candidates,
                            max_bootstrapped_demos=budget.max_demos, max_labeled_demos=budget.max_labeled_demos,
                            num_threads=budget.threads, seed=budget.seed, metric_threshold=budget.threshold,
                            verbose=False)
    if name == "gepa":
        return dspy.GEPA(metric=feedback_metric, max_metric_calls=budget.metric_calls,
                         reflection_lm=reflection_lm or dspy.settings.lm, num_threads=budget.threads,
                         seed=budget.seed, reflection_minibatch_size=3)
    if name == "simba":
        return dspy.SIMBA(metric=metric, bsize=budget.batch_size, num_candidates=budget.candidates,
                          max_steps=budget.trials, max_demos=budget.max_demos, num_threads=budget.threads)
    raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")


def compile_program(program: dspy.Module, optimizer: str, trainset: list[dspy.Example],
                    valset: list[dspy.Example] | None = None, budget: Budget = Budget(), stage: str | None = None,
                    reflection_lm: dspy.LM | None = None) -> dspy.Module:
    """A compiled copy of `program`; `program` itself is left untouched."""
    if stage in STAGE_ALONE:
        return _compile_stage_alone(program, optimizer, stage, trainset, valset, budget, reflection_lm)
    student = freeze_except(program.deepcopy(), stage)
    teleprompter = make_optimizer(optimizer, budget, reflection_lm)
    compiled = _run(teleprompter, optimizer, student, trainset, valset, budget)
    for _, module in compiled.named_sub_modules():  # thaw, so a later compile may touch any stage again
        module._compiled = False
    return compiled


def stage_examples(stage: str, examples: list[dspy.Example]) -> list[dspy.Example]:
    """The stage's own inputs: the text (and, for extraction, the filter's labels when given)."""
    if stage == "filter":
        missing = [e for e in examples if getattr(e, "is_procedural", None) is None]
        if missing:
            raise ValueError("compiling the filter alone needs an `is_procedural` label on every example")
        return [dspy.Example(text=e.text, is_procedural=e.is_procedural,
                             **({"task_category": e.task_category} if getattr(e, "task_category", None) else {}))
                .with_inputs("text") for e in examples]
    return [dspy.Example(text=e.text, summary=getattr(e, "summary", "") or "", domain=getattr(e, "domain", "") or "")
            .with_inputs("text", "summary", "domain") for e in examples]


def _compile_stage_alone(program, optimizer, stage, trainset, valset, budget, reflection_lm):
    metric = STAGE_ALONE[stage]
    teleprompter = make_optimizer(optimizer, budget, reflection_lm, metric=metric, feedback_metric=_with_feedback(metric))
    train = stage_examples(stage, trainset)
    val = stage_examples(stage, valset) if valset else None
    compiled_stage = _run(teleprompter, optimizer, getattr(program, stage).deepcopy(), train, val, budget)
    compiled_stage._compiled = False
    compiled = program.deepcopy()
    setattr(compiled, stage, compiled_stage)
    return compiled


def check_budget(optimizer: str, trainset: list, valset: list | None, budget: Budget) -> None:
    """Refuse, before any LM call, a compile the optimizer would abort later (ValueError, one line)."""
    if not trainset:
        raise ValueError("the trainset is empty")
    if optimizer == "simba" and len(trainset) < budget.batch_size:
        raise ValueError(f"simba needs at least --batch-size ({budget.batch_size}) training examples, "
                         f"got {len(trainset)}: add examples or lower --batch-size")


def _run(teleprompter, optimizer, student, trainset, valset, budget):
    check_budget(optimizer, trainset, valset, budget)
    with never_resubmit():
        return _compile(teleprompter, optimizer, student, trainset, valset, budget)


def _compile(teleprompter, optimizer, student, trainset, valset, budget):
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
    return compiled


def prompts(program: dspy.Module) -> dict[str, dict[str, Any]]:
    """Each predictor's instruction and demos: what a compile changes, and what `compare` shows."""
    return {name: {"instructions": p.signature.instructions, "demos": len(p.demos)}
            for name, p in program.named_predictors()}
