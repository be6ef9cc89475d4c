"""`gem-synth compile`, `eval` and `compare`: improve the program and compare variants in MLflow."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any



def add_parsers(sub, add_model_options) -> None:
    c = sub.add_parser("compile", help="optimize the GEM program (or one stage) with a DSPy teleprompter")
    c.add_argument("--optimizer", required=True, choices=["bootstrap", "random-search", "mipro", "gepa", "simba"],
                   help="the DSPy teleprompter")
    c.add_argument("--trainset", required=True, help="JSONL of {text, is_procedural?, task_category?} or any corpus")
    c.add_argument("--devset", required=True, help="scored before and after compiling; same forms as --trainset")
    c.add_argument("--out", type=Path, required=True, help="where to save the compiled state, e.g. compiled/v1.json")
    c.add_argument("--stage", choices=["filter", "extract", "generate", "refine", "judge"],
                   help="optimize only this stage; the others stay as they are")
    c.add_argument("--program", help="start from a saved program state instead of the default prompts")
    c.add_argument("--max-demos", type=int, default=2, help="bootstrapped demos per predictor")
    c.add_argument("--threshold", type=float, default=0.7, help="score a bootstrapped demo must reach")
    c.add_argument("--candidates", type=int, default=4,
                   help="candidate programs (random-search) or instructions (mipro, simba)")
    c.add_argument("--trials", type=int, default=6, help="MIPROv2 trials; SIMBA steps")
    c.add_argument("--metric-calls", type=int, default=60, help="GEPA budget")
    c.add_argument("--batch-size", type=int, default=8, help="SIMBA and MIPROv2 minibatch size")
    c.add_argument("--threads", type=int, default=4, help="examples evaluated concurrently")
    c.add_argument("--reflection-lm", help="GEPA's reflection model (default: the program's model)")
    c.add_argument("--keep-worse", action="store_true",
                   help="save the compiled program even when it scores lower on the devset than before")
    _common(c, add_model_options)

    e = sub.add_parser("eval", help="score a program on a devset")
    e.add_argument("--program", help="a saved program state (default: the uncompiled program)")
    e.add_argument("--devset", required=True, help="JSONL of {text, is_procedural?, task_category?} or any corpus")
    e.add_argument("--per-example", action="store_true", help="print one line per example")
    e.add_argument("--against", help="a second program on the same texts (`synthesizer`, `pipeline` or a state "
                                     "path): quality and cost per accepted trajectory side by side")
    e.add_argument("--threads", type=int, default=4, help="examples evaluated concurrently")
    _common(e, add_model_options)

    d = sub.add_parser("distil", help="distil the pipeline's output into the one-call synthesizer")
    d.add_argument("--teacher-run", action="append", required=True, help="a `gem-synth run` output folder (repeatable)")
    d.add_argument("--out", type=Path, required=True, help="where to save the compiled synthesizer state")
    d.add_argument("--sft-out", type=Path, help="also write the SFT chat dataset (HF, `messages` column) here")
    d.add_argument("--devset", help="score the synthesizer before and after on these texts")
    d.add_argument("--optimizer", default="bootstrap", choices=["bootstrap", "random-search", "mipro", "gepa", "simba"],
                   help="the search over teacher demos and instructions")
    d.add_argument("--max-demos", type=int, default=2, help="labelled teacher demos per prompt")
    d.add_argument("--no-negatives", action="store_true", help="leave out the texts the teacher rejected")
    d.add_argument("--threads", type=int, default=4, help="examples evaluated concurrently")
    _common(d, add_model_options)

    f = sub.add_parser("finetune", help="fine-tune a model on the SFT dataset written by distil --sft-out")
    f.add_argument("--data", type=Path, required=True, help="the SFT dataset folder written by distil --sft-out")
    f.add_argument("--base-model", required=True, help="a HF model id/folder (trl) or a provider model (provider)")
    f.add_argument("--backend", choices=["trl", "provider"], default="trl",
                   help="trl: train locally (needs trl and torch); provider: the model provider's fine-tuning API")
    f.add_argument("--out", type=Path, default=Path("finetuned"), help="where the trl backend saves the model")
    f.add_argument("--epochs", type=float, default=1.0, help="training epochs (trl)")
    f.add_argument("--max-steps", type=int, default=-1, help="stop after N optimizer steps; -1: no limit (trl)")
    f.add_argument("--allow-cpu", action="store_true", help="train without a GPU (slow; for checks)")

    m = sub.add_parser("compare", help="compare runs, compiles and evals from MLflow side by side")
    m.add_argument("runs", nargs="*", help="MLflow run ids (default: the latest finished runs)")
    m.add_argument("--experiment", action="append",
                   help="MLflow experiment to read (repeatable; default: gem-synth and gem-synth-optimize, "
                        "where run and compile/eval log)")
    m.add_argument("--last", type=int, default=4, help="how many of the latest runs")


def _common(p: argparse.ArgumentParser, add_model_options) -> None:
    p.add_argument("--stages", default="filter,extract,generate,refine,validate,judge",
                   help="comma list of the pipeline's stages, as for run")
    p.add_argument("--limit", type=int, help="use only the first N examples of each set")
    p.add_argument("--experiment", default="gem-synth-optimize", help="MLflow experiment name")
    p.add_argument("--no-track", action="store_true", help="do not record an MLflow run")
    p.add_argument("--cache-dir", help="DSPy disk cache (default $DSPY_CACHEDIR or ~/.dspy_cache)")
    add_model_options(p)


def _setup(args, plan):
    from gem_synth.backends.models import assign_models, check_lm, configure_cache
    from gem_synth.programs.pipeline import Stages
    from gem_synth.running.runner import build_program

    for spec in {plan.default, *plan.stages.values()}:
        check_lm(spec)
    configure_cache(args.cache_dir)
    program = build_program(args.program, Stages.parse(args.stages))
    lm = assign_models(program, plan)
    import dspy

    from gem_synth.programs.adapter import GEMJSONAdapter

    dspy.configure(lm=lm, adapter=GEMJSONAdapter(), max_history_size=0)
    return program, lm


def _params(args, plan, program, devset, extra: dict[str, Any]) -> dict[str, Any]:
    from gem_synth.programs.pipeline import Stages
    from gem_synth.running.runner import program_hash

    return {**plan.public(), "stages": args.stages, "devset": args.devset, "devset.size": len(devset),
            "program": args.program or "default", "program_hash": program_hash(program, Stages.parse(args.stages)),
            **extra}


def _track(args, name: str, params: dict[str, Any]):
    import contextlib

    if args.no_track:
        return contextlib.nullcontext()
    import mlflow

    from gem_synth.running.tracking import tracked_run

    mlflow.dspy.autolog(log_traces=False, log_compiles=True, log_evals=True)
    return tracked_run(args.experiment, name, params)


def _log(evaluation, prefix: str, program, enabled: bool) -> None:
    if not enabled:
        return
    import mlflow

    from gem_synth.optimizers.compile import prompts

    mlflow.log_metrics(evaluation.metrics(prefix))
    mlflow.log_dict(evaluation.rows(), f"{prefix}per_example.json")
    mlflow.log_dict(prompts(program), "prompts.json")


def cmd_compile(args, plan) -> int:
    from gem_synth.optimizers.compile import Budget, check_budget, compile_program, prompts
    from gem_synth.optimizers.evaluate import evaluate
    from gem_synth.running.corpus import load_examples
    from gem_synth.programs.pipeline import Stages
    from gem_synth.running.runner import program_hash

    trainset = load_examples(args.trainset, limit=args.limit)
    devset = load_examples(args.devset, limit=args.limit)
    program, lm = _setup(args, plan)
    reflection = None
    if args.reflection_lm:
        from gem_synth.backends.models import ModelSpec, build_lm

        reflection = build_lm(ModelSpec(model=args.reflection_lm))
    budget = Budget(max_demos=args.max_demos, threshold=args.threshold, candidates=args.candidates,
                    trials=args.trials, metric_calls=args.metric_calls, batch_size=args.batch_size,
                    threads=args.threads)
    params = _params(args, plan, program, devset, {"optimizer": args.optimizer, "stage": args.stage or "all",
                                                   "trainset": args.trainset, "trainset.size": len(trainset),
                                                   **budget.params()})
    check_budget(args.optimizer, trainset, devset, budget)  # before the "before" evaluation is paid
    with _track(args, f"compile-{args.optimizer}-{args.out.stem}", params):
        before = evaluate(program, devset, args.threads)
        compiled = compile_program(program, args.optimizer, trainset, devset, budget, args.stage, reflection)
        after = evaluate(compiled, devset, args.threads)
        worse = after.score < before.score
        if not worse or args.keep_worse:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            compiled.save(str(args.out))
        if not args.no_track:
            import mlflow

            _log(before, "before.", program, True)
            _log(after, "after.", compiled, True)
            mlflow.log_param("compiled_hash", program_hash(compiled, Stages.parse(args.stages)))
            if args.out.exists():
                mlflow.log_artifact(str(args.out))
    print("devset before\n" + before.table())
    print("devset after\n" + after.table())
    changed = {k: v for k, v in prompts(compiled).items() if v != prompts(program)[k]}
    print(f"changed predictors: {', '.join(changed) or 'none'}")
    if worse and not args.keep_worse:
        print(f"gem-synth: the compiled program scored lower on the devset ({before.score:.3f} -> {after.score:.3f}); "
              f"not saved (--keep-worse saves it anyway)", file=sys.stderr)
        return 1
    if worse:
        print(f"gem-synth: warning: the compiled program scored lower on the devset "
              f"({before.score:.3f} -> {after.score:.3f}); saved as asked", file=sys.stderr)
    print(f"saved {args.out}  (load it with: gem-synth run --program {args.out} ...)")
    return 0


def cmd_eval(args, plan) -> int:
    from gem_synth.optimizers.evaluate import evaluate_with_cost, side_by_side
    from gem_synth.running.corpus import load_examples
    from gem_synth.programs.pipeline import Stages
    from gem_synth.running.runner import build_program

    devset = load_examples(args.devset, limit=args.limit)
    program, _ = _setup(args, plan)
    named = {args.program or "pipeline": program}
    if args.against:
        other = None if args.against == "pipeline" else args.against
        named[args.against] = build_program(other, Stages.parse(args.stages))
    results = {}
    for name, prog in named.items():
        with _track(args, f"eval-{Path(name).stem}", _params(args, plan, prog, devset, {"kind": "eval",
                                                                                        "program": name})):
            evaluation, cost = evaluate_with_cost(prog, devset, args.threads)
            _log(evaluation, "", prog, not args.no_track)
            if not args.no_track:
                import mlflow

                mlflow.log_metrics(cost.metrics())
        results[name] = (evaluation, cost)
    if len(results) > 1:
        print(side_by_side(results))
    else:
        print(evaluation.table())
    if args.per_example:
        for name, (evaluation, _) in results.items():
            for e in evaluation.examples:
                print(f"[{name}] {e.segment_id}  {e.score:.3f}  {e.outcome:<16} {e.feedback.splitlines()[0][:100]}")
    return 0


def cmd_distil(args, plan) -> int:
    from gem_synth.optimizers.compile import Budget, prompts
    from gem_synth.optimizers.distil import distil_prompt, pairs_from_run, sft_rows
    from gem_synth.optimizers.evaluate import evaluate
    from gem_synth.running.corpus import load_examples
    from gem_synth.running.tables import save_rows
    from gem_synth.programs.synthesizer import SYNTHESIZER

    pairs = [p for run in args.teacher_run for p in pairs_from_run(run, negatives=not args.no_negatives)]
    if not pairs:
        raise ValueError(f"no teacher pairs in {', '.join(args.teacher_run)}: nothing accepted or filtered out")
    positives = sum(p.is_procedural for p in pairs)
    if not positives:
        raise ValueError(f"{', '.join(args.teacher_run)} accepted no trajectory: a synthesizer distilled from "
                         "rejections alone would only learn to reject; run the teacher on more procedural texts")
    print(f"teacher pairs: {positives} trajectories, {len(pairs) - positives} rejections")
    if args.sft_out:
        save_rows(sft_rows(pairs), args.sft_out)
        print(f"SFT dataset: {args.sft_out} ({len(pairs)} chats)")
    args.program = SYNTHESIZER
    student, _ = _setup(args, plan)
    devset = load_examples(args.devset, limit=args.limit) if args.devset else None
    params = {**plan.public(), "teacher_runs": ",".join(args.teacher_run), "pairs": len(pairs),
              "optimizer": args.optimizer, "max_demos": args.max_demos}
    with _track(args, f"distil-{args.out.stem}", params):
        before = evaluate(student, devset, args.threads) if devset else None
        compiled = distil_prompt(pairs, devset, args.optimizer,
                                 Budget(max_labeled_demos=args.max_demos, threads=args.threads), student)
        after = evaluate(compiled, devset, args.threads) if devset else None
        args.out.parent.mkdir(parents=True, exist_ok=True)
        compiled.save(str(args.out))
        if not args.no_track and devset:
            _log(before, "before.", student, True)
            _log(after, "after.", compiled, True)
    if devset:
        print("synthesizer before\n" + before.table())
        print("synthesizer after\n" + after.table())
    print(f"demos: {prompts(compiled)['synthesize.predict']['demos']}; saved {args.out} "
          f"(run it with: gem-synth run CORPUS --out DIR --program {args.out})")
    return 0


def cmd_finetune(args) -> int:
    from gem_synth.optimizers.distil import finetune_provider, finetune_trl

    if args.backend == "trl":
        finetune_trl(args.data, args.base_model, args.out, args.epochs, args.max_steps, args.allow_cpu)
        print(f"fine-tuned model saved in {args.out}")
    else:
        print(f"fine-tuned model: {finetune_provider(args.data, args.base_model)}")
    return 0


def cmd_compare(args) -> int:
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    experiments = args.experiment or ["gem-synth", "gem-synth-optimize"]
    if args.runs:
        runs = [mlflow.get_run(r) for r in args.runs]
    else:
        known = [e for e in experiments if mlflow.get_experiment_by_name(e) is not None]
        runs = mlflow.search_runs(experiment_names=known, filter_string="attributes.status = 'FINISHED'",
                                  order_by=["attributes.start_time DESC"], max_results=args.last,
                                  output_format="list") if known else []
    if not runs:
        print(f"no finished runs in {' or '.join(repr(e) for e in experiments)}")
        return 1
    names = [r.info.run_name or r.info.run_id[:8] for r in runs]
    names = [f"{n}:{r.info.run_id[:6]}" if names.count(n) > 1 else n for n, r in zip(names, runs)]
    keys = sorted({k for r in runs for k in r.data.metrics})
    models = [r.data.params.get("lm.model", "-") for r in runs]
    width = max(12, *(len(n) for n in names + models)) + 2
    label = max(len("metric"), *(len(k) for k in keys)) + 2
    print(f"{'metric':<{label}}" + "".join(f"{n:>{width}}" for n in names))
    print(f"{'model':<{label}}" + "".join(f"{m:>{width}}" for m in models))
    for key in keys:
        cells = _row([r.data.metrics.get(key) for r in runs])
        print(f"{key:<{label}}" + "".join(f"{c:>{width}}" for c in cells))
    for key in ("optimizer", "stage", "program_hash", "compiled_hash"):
        values = [r.data.params.get(key, "-") for r in runs]
        if any(v != "-" for v in values):
            print(f"{key:<{label}}" + "".join(f"{v:>{width}}" for v in values))
    texts = [_prompts(r) for r in runs]
    for predictor in sorted({p for t in texts for p in t}):
        variants = [t.get(predictor, {}).get("instructions") for t in texts]
        if len({v for v in variants if v}) > 1:
            print(f"\ninstructions of {predictor} differ:")
            for name, text in zip(names, variants):
                print(f"  [{name}] {(text or '-')[:300]!r}")
    return 0


def _row(values: list[float | None]) -> list[str]:
    """One metric across runs: integers when every value is whole (counts), else three decimals for all
    (scores and rates), so 50 and 0.500, or 1 and 0.933, never look alike."""
    present = [v for v in values if v is not None]
    whole = bool(present) and all(float(v).is_integer() for v in present) and any(abs(v) > 1 for v in present)
    return ["-" if v is None else (f"{int(v):,}" if whole else f"{v:.3f}") for v in values]


def _prompts(run) -> dict:
    import mlflow

    try:
        return mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/prompts.json")
    except Exception:
        return {}
