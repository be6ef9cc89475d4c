"""The Trajectory Synthesizer: one call, the same checks, distilled from the pipeline."""

import json

import datasets
import dspy
import pytest

from gem_synth.optimizers.distil import distil_prompt, pairs_from_results, sft_rows
from gem_synth.programs.adapter import GEMJSONAdapter
from gem_synth.running.exports import parse_sft_answer
from gem_synth.optimizers.evaluate import evaluate, evaluate_with_cost, side_by_side
from gem_synth.programs.pipeline import GEMPipeline, Stages, run_segment
from gem_synth.programs.synthesizer import Synthesizer
from gem_synth.signatures import TrajectorySynthesis
from gem_synth.signatures.records import Segment
from tests.fixtures import BROKEN, CONVERSATION, PROCEDURE, STORY, TOOL_SPECS, TURNS, handlers
from tests.scripted import MAGIC, scripted_lm

PATTERNS = ["clarification", "rule_awareness", "multi_hop_reasoning"]


def synthesize(inputs):
    if "claim" not in inputs["text"].lower():
        return {"is_procedural": False, "tools": [], "trajectory": None, "patterns_used": []}
    helped = "easy" in inputs["text"] or inputs["__demos__"] > 0 or MAGIC in inputs["__system__"]
    return {"is_procedural": True, "tools": TOOL_SPECS, "trajectory": CONVERSATION if helped else BROKEN,
            "patterns_used": PATTERNS if helped else []}


def example(text, i):
    return dspy.Example(text=f"{text} (case {i})", segment_id=f"s{i}").with_inputs("text", "segment_id")


DEV = [example(PROCEDURE, i) for i in range(10, 14)]


@pytest.fixture
def engine():
    lm, engine = scripted_lm(handlers({TrajectorySynthesis: synthesize}))
    with dspy.context(lm=lm, adapter=GEMJSONAdapter()):
        yield engine


def test_one_call_gives_the_same_typed_result(engine):
    result = run_segment(Synthesizer(), Segment(id="x", source="t", text=PROCEDURE + " easy"))
    assert result.outcome == "accepted" and result.record.stats.tool_calls == 2
    assert dict(engine.calls) == {"TrajectorySynthesis": 1, "HallucinationJudge": 1}
    story = run_segment(Synthesizer(), Segment(id="y", source="t", text=STORY))
    assert (story.outcome, story.stage) == ("filtered_out", "synthesize")
    broken = run_segment(Synthesizer(Stages(judge=False)), Segment(id="z", source="t", text=PROCEDURE))
    assert (broken.outcome, broken.stage) == ("rule_violations", "validate")
    assert [v.code for v in broken.violations] == ["O006"]


def teacher_pairs():
    teacher = GEMPipeline(Stages(refine=False, judge=False))
    texts = [PROCEDURE + f" case {i}" for i in range(4)] + [STORY + " again", STORY]
    results = [run_segment(teacher, Segment(id=f"t{i}", source="teach", text=t)) for i, t in enumerate(texts)]
    return pairs_from_results(results)


def test_distilled_synthesizer_beats_the_uncompiled_one(engine):
    pairs = teacher_pairs()
    assert [p.is_procedural for p in pairs] == [True] * 4 + [False] * 2
    assert pairs[0].tools[2].kind == "write" and pairs[0].trajectory.rounds[-1].reply.startswith("Done")
    student = Synthesizer(Stages(judge=False))
    before = evaluate(student, DEV).score
    compiled = distil_prompt(pairs, DEV, student=student)
    after = evaluate(compiled, DEV)
    assert after.outcomes == {"accepted": 4} and after.score > before + 0.2
    assert len(compiled.synthesize.predict.demos) > 0


def test_sft_rows_load_with_datasets_and_parse_back(engine, tmp_path):
    pairs = teacher_pairs()
    rows = sft_rows(pairs)
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "sft"))
    loaded = datasets.load_from_disk(str(tmp_path / "sft"))
    assert loaded.num_rows == 6 and loaded.column_names == ["id", "messages"]
    chat = loaded[0]["messages"]
    assert [m["role"] for m in chat] == ["system", "user", "assistant"]
    assert chat[0]["content"] == TrajectorySynthesis.instructions and chat[1]["content"] == pairs[0].text
    answer = parse_sft_answer(chat[2]["content"])
    assert answer["tools"][0]["function"]["name"] == "list_visits"
    assert answer["messages"][2]["tool_calls"][0]["function"]["arguments"] == '{"patient_id": "P-100"}'
    assert parse_sft_answer(loaded[5]["messages"][2]["content"])["is_procedural"] is False
    with pytest.raises(ValueError):
        parse_sft_answer(json.dumps({"tools": []}))


def test_cost_comparison_counts_what_the_engine_counted(engine):
    texts = [example(PROCEDURE + " easy", i) for i in range(3)]
    before = dict(engine.calls), engine.tokens_in, engine.tokens_out
    pipeline = evaluate_with_cost(GEMPipeline(Stages(judge=False)), texts)
    synth = evaluate_with_cost(Synthesizer(Stages(judge=False)), texts)
    calls = {k: v - before[0].get(k, 0) for k, v in engine.calls.items()}
    assert pipeline[1].lm_calls == calls["RelevanceFilter"] + calls["WorkflowExtraction"] + \
        calls["TrajectoryGeneration"] + calls["ToolExtension"] + calls["ComplexityRefinement"] == 15
    assert synth[1].lm_calls == calls["TrajectorySynthesis"] == 3
    assert pipeline[1].prompt_tokens + synth[1].prompt_tokens == engine.tokens_in - before[1]
    assert pipeline[1].completion_tokens + synth[1].completion_tokens == engine.tokens_out - before[2]
    assert pipeline[1].per_accepted()["lm_calls"] == 5.0 and synth[1].per_accepted()["lm_calls"] == 1.0
    table = side_by_side({"pipeline": pipeline, "synthesizer": synth})
    assert "lm_calls / accepted" in table and "5.000" in table and "1.000" in table


def test_distil_run_and_compare_from_the_command_line(tmp_path, monkeypatch, capsys):
    from gem_synth.cli.main import main
    from gem_synth.signatures import TrajectoryGeneration
    from tests.fake_openai import FakeOpenAIServer
    from tests.scripted import ScriptedEngine, http_responder

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    teach = tmp_path / "teach"
    teach.mkdir()
    for i in range(3):
        (teach / f"claim{i}.md").write_text(f"{PROCEDURE} Case {i}.")
    (teach / "story.md").write_text(STORY)
    new = tmp_path / "new"
    new.mkdir()
    (new / "claim.md").write_text(PROCEDURE + " A new case.")
    (tmp_path / "dev.jsonl").write_text("".join(json.dumps({"text": e.text}) + "\n" for e in DEV))
    engine = ScriptedEngine(handlers({TrajectorySynthesis: synthesize,
                                      TrajectoryGeneration: lambda i: {"trajectory": CONVERSATION, "patterns_used": PATTERNS}}))
    with FakeOpenAIServer(http_responder(engine)) as server:
        model = ["--lm", "hosted_vllm/scripted", "--api-base", server.url, "--cache-dir", str(tmp_path / "cache")]
        quiet = ["--no-progress", "--no-track", "--near-duplicates", "0"]  # variants of one procedure
        assert main(["run", str(teach), "--out", "teacher", "--stages", "filter,extract,generate,validate",
                     *quiet, *model]) == 0
        assert main(["distil", "--teacher-run", "teacher", "--out", "compiled/synth.json", "--sft-out", "sft",
                     "--devset", "dev.jsonl", "--stages", "validate", "--no-track", *model]) == 0
        out = capsys.readouterr().out
        assert "teacher pairs: 3 trajectories, 1 rejections" in out and "SFT dataset: sft (4 chats)" in out
        assert main(["run", str(new), "--out", "synth", "--program", "compiled/synth.json", "--stages", "validate",
                     *quiet, *model]) == 0
        rows = datasets.load_from_disk("synth/trajectories")
        assert rows.num_rows == 1 and "Synthesizer" in rows[0]["program_version"] and rows[0]["lm_calls"] == 1
        capsys.readouterr()
        assert main(["eval", "--devset", "dev.jsonl", "--program", "compiled/synth.json", "--against", "pipeline",
                     "--stages", "filter,extract,generate,validate", "--no-track", *model]) == 0
        table = capsys.readouterr().out
    assert "synth.json" in table and "pipeline" in table and "lm_calls / accepted" in table
    assert datasets.load_from_disk("sft").num_rows == 4
    code = main(["finetune", "--data", "sft", "--base-model", "tiny", "--backend", "trl"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("gem-synth: error: ") and ("trl" in err or "GPU" in err)
