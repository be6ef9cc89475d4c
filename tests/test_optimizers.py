"""Each DSPy optimizer compiles the GEM program to a higher score on a scripted engine.

The scripted generator writes a complete conversation only when it has help: few-shot
demos in the prompt, an instruction carrying MAGIC (what the scripted proposer and
reflection model suggest), or an easy text. Without help it stops after a tool result
(rule O004), so the uncompiled program scores low on the hard devset.
"""

import dspy
import pytest

from gem_synth.optimizers.compile import Budget, compile_program, prompts
from gem_synth.optimizers.evaluate import evaluate
from gem_synth.programs.adapter import GEMJSONAdapter
from gem_synth.programs.pipeline import GEMPipeline, Stages
from gem_synth.signatures import TrajectoryGeneration
from tests.fixtures import BROKEN, CONVERSATION, PROCEDURE, handlers
from tests.scripted import MAGIC, scripted_lm

STAGES = Stages(filter=False, refine=False, judge=False)
PATTERNS = ["clarification", "rule_awareness", "multi_hop_reasoning"]


def generate(inputs):
    helped = "easy" in inputs["text"] or inputs["__demos__"] > 0 or MAGIC in inputs["__system__"]
    return {"trajectory": CONVERSATION if helped else BROKEN, "patterns_used": PATTERNS if helped else []}


def example(text, i):
    return dspy.Example(text=f"{text} (case {i})", segment_id=f"s{i}").with_inputs("text", "segment_id")


TRAIN = [example(PROCEDURE + " easy", i) for i in range(4)] + [example(PROCEDURE, i) for i in range(4, 8)]
DEV = [example(PROCEDURE, i) for i in range(8, 12)]


@pytest.fixture
def lm():
    lm, engine = scripted_lm(handlers({TrajectoryGeneration: generate}), cache=False)
    with dspy.context(lm=lm, adapter=GEMJSONAdapter()):
        yield lm


def test_uncompiled_program_scores_low_on_the_hard_devset(lm):
    result = evaluate(GEMPipeline(STAGES), DEV)
    assert result.outcomes == {"rule_violations": 4}
    assert 0.2 < result.score < 0.6 and result.parts["validity"] == 0.5


@pytest.mark.parametrize("optimizer", ["bootstrap", "random-search", "mipro", "gepa", "simba"])
def test_each_optimizer_raises_the_devset_score(lm, optimizer):
    program = GEMPipeline(STAGES)
    before = evaluate(program, DEV).score
    compiled = compile_program(program, optimizer, TRAIN, DEV, Budget(batch_size=4, trials=3, candidates=3,
                                                                    metric_calls=40, threads=2), reflection_lm=lm)
    after = evaluate(compiled, DEV)
    assert after.score > before + 0.2, (optimizer, before, after.score)
    assert after.outcomes == {"accepted": 4}
    changed = prompts(compiled)["generate.predict"]
    assert changed["demos"] > 0 or MAGIC in changed["instructions"]
    assert prompts(program)["generate.predict"]["demos"] == 0  # the input program is left as it was


def test_one_stage_compiles_and_the_others_stay_frozen(lm):
    compiled = compile_program(GEMPipeline(STAGES), "bootstrap", TRAIN, budget=Budget(), stage="generate")
    demos = {name: p["demos"] for name, p in prompts(compiled).items()}
    assert demos["generate.predict"] > 0
    assert demos["extract.predict"] == 0
    with pytest.raises(ValueError, match="unknown stage"):
        compile_program(GEMPipeline(STAGES), "bootstrap", TRAIN, stage="rewrite")


def test_saved_state_loads_back_to_the_same_predictions(lm, tmp_path):
    compiled = compile_program(GEMPipeline(STAGES), "bootstrap", TRAIN)
    path = tmp_path / "compiled.json"
    compiled.save(str(path))
    loaded = GEMPipeline(STAGES)
    loaded.load(str(path))
    assert prompts(loaded) == prompts(compiled)
    original = [compiled(**e.inputs()).result.model_dump() for e in DEV]
    again = [loaded(**e.inputs()).result.model_dump() for e in DEV]
    assert original == again and all(r["outcome"] == "accepted" for r in again)


def test_unknown_optimizer_is_refused(lm):
    with pytest.raises(ValueError, match="unknown optimizer"):
        compile_program(GEMPipeline(STAGES), "annealing", TRAIN)


def test_compile_eval_compare_from_the_command_line_land_in_mlflow(tmp_path, monkeypatch, capsys):
    import json

    import mlflow

    from gem_synth.cli.main import main
    from tests.fake_openai import FakeOpenAIServer
    from tests.scripted import ScriptedEngine, http_responder

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    for name, rows in (("train.jsonl", TRAIN), ("dev.jsonl", DEV)):
        (tmp_path / name).write_text("".join(json.dumps({"text": e.text, "is_procedural": True}) + "\n" for e in rows))
    engine = ScriptedEngine(handlers({TrajectoryGeneration: generate}))
    with FakeOpenAIServer(http_responder(engine)) as server:
        model = ["--lm", "hosted_vllm/scripted", "--api-base", server.url, "--cache-dir", str(tmp_path / "cache"),
                 "--stages", "extract,generate,validate"]
        assert main(["compile", "--optimizer", "bootstrap", "--trainset", "train.jsonl", "--devset", "dev.jsonl",
                     "--out", "compiled/boot.json", "--stage", "generate", "--experiment", "opt", *model]) == 0
        out = capsys.readouterr().out
        assert "changed predictors: generate.predict" in out
        assert main(["eval", "--program", "compiled/boot.json", "--devset", "dev.jsonl", "--experiment", "opt",
                     "--per-example", *model]) == 0
        assert "accepted" in capsys.readouterr().out
        assert main(["eval", "--devset", "dev.jsonl", "--experiment", "opt", *model]) == 0
    runs = mlflow.search_runs(experiment_names=["opt"], output_format="list")
    by_name = {r.info.run_name: r for r in runs}
    compile_run = by_name["compile-bootstrap-boot"]
    assert compile_run.data.params["optimizer"] == "bootstrap" and compile_run.data.params["stage"] == "generate"
    assert compile_run.data.metrics["after.score"] > compile_run.data.metrics["before.score"] + 0.2
    assert by_name["eval-boot"].data.metrics["score"] == compile_run.data.metrics["after.score"]
    assert by_name["eval-pipeline"].data.metrics["score"] == compile_run.data.metrics["before.score"]
    capsys.readouterr()
    assert main(["compare", "--experiment", "opt", "--last", "3"]) == 0
    table = capsys.readouterr().out
    assert "after.score" in table and "eval-boot" in table and "eval-pipeline" in table


def test_the_filter_compiles_alone_against_its_labels(lm):
    from gem_synth.signatures import RelevanceFilter

    def filter_(inputs):
        helped = "easy" in inputs["text"] or inputs["__demos__"] > 0 or MAGIC in inputs["__system__"]
        truth = "claim" in inputs["text"].lower()
        return {"is_procedural": truth if helped else True, "summary": "s", "domain": "d", "platform": "p",
                "task_category": "other"}

    def labelled(text, truth, i):
        return dspy.Example(text=f"{text} ({i})", segment_id=f"f{i}", is_procedural=truth).with_inputs(
            "text", "segment_id")

    story = "The keeper watched the storm."
    train = [labelled(PROCEDURE + " easy", True, i) for i in range(3)] + [labelled(story + " easy", False, i)
                                                                          for i in range(3, 6)]
    dev = [labelled(PROCEDURE, True, 6), labelled(story, False, 7), labelled(story, False, 8)]
    lm2, engine = scripted_lm(handlers({TrajectoryGeneration: generate, RelevanceFilter: filter_}))
    with dspy.context(lm=lm2):
        program = GEMPipeline(Stages(refine=False, judge=False))
        before = [program.filter(text=e.text).filter_labels.is_procedural for e in dev]
        compiled = compile_program(program, "bootstrap", train, dev, stage="filter")
        after = [compiled.filter(text=e.text).filter_labels.is_procedural for e in dev]
        assert before == [True, True, True] and after == [True, False, False]
        assert prompts(compiled)["filter.predict"]["demos"] > 0
        assert {k: v for k, v in prompts(compiled).items() if k != "filter.predict"} == \
            {k: v for k, v in prompts(program).items() if k != "filter.predict"}
        assert evaluate(compiled, dev).score > evaluate(program, dev).score
        with pytest.raises(ValueError, match="needs an `is_procedural` label"):
            compile_program(program, "bootstrap", TRAIN, stage="filter")
