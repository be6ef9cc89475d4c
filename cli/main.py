"""The `gem-synth` command: the one place that reaches every layer.

Every expected failure (bad corpus, unusable model, conflicting output folder) ends in
one `gem-synth: error: ...` line and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def _add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("models (default: the embedded SmolLM2-135M; see README)")
    g.add_argument("--lm", dest="model", help="any DSPy/LiteLLM model, e.g. openai/gpt-4.1 or hosted_vllm/NAME "
                                              "(env GEM_SYNTH_LM)")
    g.add_argument("--api-base", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 (env GEM_SYNTH_API_BASE)")
    g.add_argument("--api-key", help="key for --api-base (env GEM_SYNTH_API_KEY; provider keys come from their "
                                     "usual variables, e.g. OPENAI_API_KEY)")
    g.add_argument("--temperature", type=float, help="sampling temperature (default: the provider's)")
    g.add_argument("--max-tokens", type=int, help="longest answer per LM call, in tokens (default: the provider's; "
                                                  "the embedded model: 2048)")
    g.add_argument("--num-retries", type=int, help="retries of a failed LM call, with backoff (default: 3)")
    g.add_argument("--timeout", type=float, help="seconds per LM call")
    g.add_argument("--constrain", choices=("auto", "schema", "json", "off"),
                   help="what goes out as response_format: `schema` (the per-segment JSON Schema), `json` (JSON mode), "
                        "`off`; auto (default) sends the schema to the embedded model, to any --api-base server "
                        "and to providers known to take it")
    for stage in ("filter", "extract", "generate", "refine", "judge"):
        g.add_argument(f"--{stage}-lm", help=f"a different model for the {stage} stage")
    g.add_argument("--config", help="TOML file with an [lm] table and optional [lm.<stage>] tables")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gem-synth", description="Synthesize tool-use trajectories from text (GEM).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    v = sub.add_parser("validate", help="check OpenAI-format tool-use records against GEM's rules")
    v.add_argument("file", type=Path, help="a JSON object, a JSON list, or JSONL of {tools, messages} records")
    v.add_argument("--no-grounding", action="store_true", help="skip the G001 grounding check")
    v.add_argument("--rules", choices=["openai", "gem"], default="gem",
                   help="openai: what any OpenAI-format tool-use record must satisfy; gem: also GEM's conventions "
                        "(system turn first, ends with assistant text, grounding...)")
    v.add_argument("--strict-grounding", action="store_true", help="count G001 warnings as failures (exit 1)")

    r = sub.add_parser("run", help="turn a corpus into a dataset of trajectories")
    r.add_argument("corpus", help="a .txt/.md/.html file, a folder of them, a .jsonl file, or a HF dataset "
                                  "(saved folder or hub name)")
    r.add_argument("--out", type=Path, required=True, help="output folder; rerun the same command to resume")
    r.add_argument("--segment-words", type=int, default=500, help="about this many words per segment, "
                                                                 "cut at paragraph ends")
    r.add_argument("--text-field", default="text", help="JSONL field holding the text")
    r.add_argument("--text-column", default="text", help="dataset column holding the text")
    r.add_argument("--split", default="train", help="dataset split to read")
    r.add_argument("--stages", default="filter,extract,generate,refine,validate,judge",
                   help="comma list; drop refine or judge for ablations, filter for curated corpora")
    r.add_argument("--strict-grounding", action="store_true", help="reject trajectories with G001 warnings")
    r.add_argument("--near-duplicates", type=float, default=0.8, metavar="JACCARD",
                   help="a segment whose word shingles overlap an earlier one's this much (MinHash LSH) is a "
                        "`duplicate` and costs no LM call; 0 turns it off (exact duplicates are always caught)")
    r.add_argument("--workers", type=int, default=4, help="segments processed concurrently: the ceiling of LM "
                                                         "calls in flight, which adapt below it to what the "
                                                         "endpoint answers (429/503/timeouts cut them by a quarter)")
    r.add_argument("--fixed-concurrency", action="store_true",
                   help="keep --workers calls in flight whatever the endpoint answers (LiteLLM retries instead)")
    r.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: threads in this process; ray: a Ray Dataset over a cluster (scripts/setup.sh ray), "
                        "same tables, resume and duplicates")
    r.add_argument("--ray-address", metavar="ADDRESS",
                   help="with --engine ray: an existing cluster (HOST:PORT of its head, or auto); "
                        "default: a local cluster started for the run")
    r.add_argument("--ray-actors", type=int, metavar="N",
                   help="with --engine ray: worker processes sharing --workers (default: one per CPU); never more "
                        "than --workers or the segments to do")
    r.add_argument("--limit", type=int, help="only the first N corpus items")
    r.add_argument("--sample", type=int, help="a uniform random sample of N items (with --seed)")
    r.add_argument("--seed", type=int, default=0, help="seed of --sample")
    r.add_argument("--format", choices=["arrow", "jsonl", "parquet"], default="arrow",
                   help="how the trajectories and rejects tables are written")
    r.add_argument("--program", help="`synthesizer` for the one-call synthesizer, or a compiled program state "
                                     "(JSON) saved by `gem-synth compile` or `distil`")
    r.add_argument("--cache-dir", help="DSPy disk cache (default $DSPY_CACHEDIR or ~/.dspy_cache)")
    r.add_argument("--no-track", action="store_true", help="do not record an MLflow run")
    r.add_argument("--trace", action="store_true", help="record DSPy traces in MLflow (autolog)")
    r.add_argument("--experiment", default="gem-synth", help="MLflow experiment name")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--push-to-hub", metavar="REPO", help="push the trajectories to the Hugging Face Hub")
    r.add_argument("--export", action="append", default=[], choices=["openai", "hermes", "sharegpt", "gem-sft"],
                   help="also write this export under OUT/exports/ (repeatable)")

    x = sub.add_parser("export", help="convert a run's trajectories to a trainer's format")
    x.add_argument("--format", required=True, choices=["openai", "hermes", "sharegpt", "gem-sft"],
                   help="the trainer's format (see README, Exports)")
    x.add_argument("input", help="a `gem-synth run` output folder (any --format), a saved HF dataset, a JSON / "
                                 "JSONL / Parquet file of OpenAI-format {tools, messages} records, or a Hub dataset name")
    x.add_argument("--split", default="train", help="dataset split to read")
    x.add_argument("output", type=Path, help="a .jsonl file, or a folder for a Hugging Face dataset")
    _add_model_options(r)

    w = sub.add_parser("view", help="write a run as one self-contained HTML page (trajectories, rejects, summary)")
    w.add_argument("run", type=Path, help="a `gem-synth run` output folder")
    w.add_argument("--out", type=Path, help="where to write the page (default: RUN/report.html)")
    w.add_argument("--serve", action="store_true", help="also serve it on 127.0.0.1 until Ctrl-C")
    w.add_argument("--port", type=int, default=8765, help="port for --serve")

    from gem_synth.cli.optimize import add_parsers

    add_parsers(sub, _add_model_options)
    for command in sub.choices.values():
        command.formatter_class = _DefaultsHelp
    return parser


class _DefaultsHelp(argparse.HelpFormatter):
    """Each option's default at the end of its help line, where it has one worth saying."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        quiet = default is None or default is False or default == [] or default == argparse.SUPPRESS
        if action.option_strings and not quiet and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gem-synth")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _plan(args):
    from gem_synth.backends.models import load_config, plan_models

    cli = {k: getattr(args, k) for k in ("model", "api_base", "api_key", "temperature", "max_tokens",
                                         "num_retries", "timeout", "constrain")}
    cli |= {f"{s}_lm": getattr(args, f"{s}_lm") for s in ("filter", "extract", "generate", "refine", "judge")}
    return plan_models(cli, load_config(args.config))


def cmd_validate(args) -> int:
    from gem_synth.cli.validate import run_validate

    return run_validate(args.file, grounding=not args.no_grounding, out=sys.stdout, rules=args.rules,
                        strict_grounding=args.strict_grounding)


def _export(source, fmt: str, out: Path, split: str = "train") -> None:
    from gem_synth.running.exports import load_trajectories, write_export
    from gem_synth.signatures import TrajectorySynthesis

    report = write_export(load_trajectories(source, split), fmt, out, TrajectorySynthesis.instructions)
    for line in report.left_out:
        print(f"left out: {line}", file=sys.stderr)
    print("\n".join(report.lines(fmt, out)))


def cmd_view(args) -> int:
    from gem_synth.running.viewer import serve, write_report

    path = write_report(args.run, args.out)
    print(f"report: {path}  (open it in a browser; no server needed)")
    if args.serve:
        serve(path.resolve(), args.port)
    return 0


def cmd_export(args) -> int:
    _export(args.input, args.format, args.output, args.split)
    return 0


def cmd_run(args) -> int:
    from gem_synth.running.corpus import CorpusOptions, read_corpus
    from gem_synth.backends.models import check_lm
    from gem_synth.programs.pipeline import Stages
    from gem_synth.running.runner import RunConfig, run

    stages = replace(Stages.parse(args.stages), strict_grounding=args.strict_grounding)
    if args.workers < 1:
        raise ValueError("--workers must be at least 1")
    if args.engine != "ray" and (args.ray_address or args.ray_actors):
        raise ValueError("--ray-address and --ray-actors need --engine ray")
    if args.engine == "ray" and args.trace:
        raise ValueError("--trace needs --engine local: DSPy traces would be recorded in the Ray workers, not the run")
    if args.ray_actors is not None and args.ray_actors < 1:
        raise ValueError("--ray-actors must be at least 1")
    if args.ray_address:
        from gem_synth.running.ray_engine import host_port

        host_port(args.ray_address)  # a malformed address fails here, before any model work
    if not 0 <= args.near_duplicates <= 1:
        raise ValueError(f"--near-duplicates must be between 0 and 1, got {args.near_duplicates}")
    options = CorpusOptions(segment_words=args.segment_words, text_field=args.text_field,
                            text_column=args.text_column, split=args.split)
    next(iter(read_corpus(args.corpus, options)), None)  # a bad corpus fails here, before any model work
    plan = _plan(args)
    cfg = RunConfig(corpus=args.corpus, out=args.out, corpus_options=options, stages=stages, workers=args.workers,
                    limit=args.limit, sample=args.sample, seed=args.seed, format=args.format,
                    program_path=args.program, track=not args.no_track, trace=args.trace,
                    experiment=args.experiment, cache_dir=args.cache_dir, progress=not args.no_progress,
                    near_duplicates=args.near_duplicates or None, adaptive=not args.fixed_concurrency,
                    engine=args.engine, ray_address=args.ray_address, ray_actors=args.ray_actors)
    def preflight() -> None:
        for spec in {plan.default, *plan.stages.values()}:
            check_lm(spec)
        judge, generator = plan.for_stage("judge"), plan.for_stage("generate")
        if stages.judge and judge.model == generator.model and not (judge.is_local or judge.is_replay):
            print(f"gem-synth: note: the judge is the generating model ({judge.model}), so it grades its own "
                  "conversations; GEM judged with a different model: set --judge-lm", file=sys.stderr)

    summary = run(cfg, plan, preflight=preflight)
    print(summary.table())
    unreadable = summary.outcomes.get("unreadable", 0)
    if summary.segments and unreadable == summary.segments:
        print(f"gem-synth: error: no readable text in {args.corpus}: all {unreadable} item(s) unreadable "
              f"(reasons in {args.out / 'rejects'})", file=sys.stderr)
        return 1
    print(f"trajectories: {args.out / 'trajectories'}   rejects: {args.out / 'rejects'}   "
          f"summary: {args.out / 'summary.json'}")
    for fmt in args.export:
        _export(args.out, fmt, args.out / "exports" / fmt)
    if args.push_to_hub:
        import datasets

        datasets.load_from_disk(str(args.out / "trajectories")).push_to_hub(args.push_to_hub)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # --version and --help answer before DSPy and LiteLLM load
    from gem_synth.cli import optimize
    from gem_synth.optimizers.distil import FinetuneUnavailable
    from gem_synth.running.corpus import CorpusError
    from gem_synth.backends.models import ModelError
    from gem_synth.running.runner import RunError

    handlers = {"validate": cmd_validate, "run": cmd_run, "export": cmd_export, "view": cmd_view, "compile": lambda a: optimize.cmd_compile(a, _plan(a)),
                "eval": lambda a: optimize.cmd_eval(a, _plan(a)), "compare": optimize.cmd_compare,
                "distil": lambda a: optimize.cmd_distil(a, _plan(a)), "finetune": optimize.cmd_finetune}
    try:
        return handlers[args.command](args)
    except (CorpusError, ModelError, RunError, FinetuneUnavailable, FileNotFoundError, ValueError) as exc:
        print(f"gem-synth: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gem-synth: interrupted; run the same command again to resume", file=sys.stderr)
        from gem_synth.backends.models import flush_cache

        try:
            flush_cache()  # finished answers on disk: the next session does not pay for them again
        except Exception:  # noqa: BLE001 - a second Ctrl-C or a full disk: exit all the same
            pass
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)  # do not wait for LM calls still under way in worker threads
    except Exception as exc:  # anything unforeseen: one line, no traceback (unreadable input is a ValueError)
        if os.environ.get("GEM_SYNTH_DEBUG"):
            raise
        print(f"gem-synth: error: {type(exc).__name__}: {exc} (set GEM_SYNTH_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
