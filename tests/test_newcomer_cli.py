"""The command line as a new user meets it (issue 18): each numbered finding, reproduced.

Models are the scripted engine behind a loopback OpenAI-compatible server where a test
must force an answer (a worse compile, an unknown model), as a user's server would.
"""

import argparse
import json
import threading
import time
from pathlib import Path

import datasets
import dspy
import pytest

from gem_synth.cli.main import build_parser, main
from gem_synth.signatures import RelevanceFilter, TrajectoryGeneration
from tests.fake_openai import FakeOpenAIServer, completion
from tests.fixtures import BROKEN, CONVERSATION, PROCEDURE, STORY, handlers
from tests.scripted import ScriptedEngine, http_responder


@pytest.fixture
def env(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("DSPY_CACHEDIR", str(tmp_path / "dspy-cache"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "claim.md").write_text(PROCEDURE)
    (tmp_path / "corpus" / "story.md").write_text(STORY)

    def cli(*args):
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err
    return tmp_path, cli


def _model(server, tmp_path):
    return ["--lm", "hosted_vllm/scripted", "--api-base", server.url, "--num-retries", "0",
            "--cache-dir", str(tmp_path / "dspy-cache")]


# 1. Every format a run can write, export can read.
@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_a_run_written_as_jsonl_or_parquet_exports(env, fmt):
    tmp, cli = env
    with FakeOpenAIServer(http_responder(ScriptedEngine(handlers()))) as server:
        code, out, err = cli("run", "corpus", "--out", "r", "--format", fmt, "--export", "openai", "--no-track",
                             "--no-progress", *_model(server, tmp))
    assert code == 0, err
    assert "openai: 1 trajectory -> " in out
    assert datasets.load_from_disk(str(tmp / "r" / "exports" / "openai")).num_rows == 1
    code, out, _ = cli("export", "--format", "sharegpt", f"r/trajectories.{fmt}", "s.jsonl")
    assert code == 0 and len((tmp / "s.jsonl").read_text().splitlines()) == 1


# 2. A failed model check does not claim the output folder.
def test_a_wrong_model_name_leaves_the_folder_free_for_the_corrected_command(env):
    tmp, cli = env
    engine = ScriptedEngine(handlers())
    scripted = http_responder(engine)

    def respond(body):
        if body["model"] == "gpt4":
            return 404, {"error": {"message": "The model `gpt4` does not exist", "type": "invalid_request_error",
                                   "code": "model_not_found"}}
        return scripted(body)

    with FakeOpenAIServer(respond) as server:
        code, _, err = cli("run", "corpus", "--out", "e7", "--lm", "hosted_vllm/gpt4", "--api-base", server.url,
                           "--num-retries", "0", "--no-track", "--no-progress")
        assert code == 2 and "was not found" in err and err.count("\n") == 1
        assert not (tmp / "e7" / "run.json").exists()
        code, _, err = cli("run", "corpus", "--out", "e7", "--no-track", "--no-progress", *_model(server, tmp))
    assert code == 0, err
    assert json.loads((tmp / "e7" / "summary.json").read_text())["segments"] == 2


# 3. No DSPy pool pays twice for a slow call.
def test_evaluators_never_resubmit_a_running_example():
    from gem_synth.optimizers.pool import never_resubmit

    calls, lock = [], threading.Lock()

    class Slow(dspy.Module):
        def forward(self, x):
            with lock:
                calls.append(x)
            time.sleep(2.5 if x == 0 else 0.01)
            return dspy.Prediction(y=x)

    def run_parallel():
        calls.clear()
        pairs = [(Slow(), {"x": i}) for i in range(3)]
        dspy.Parallel(num_threads=3, timeout=1, straggler_limit=3, disable_progress_bar=True)(pairs)
        return calls.count(0)

    assert run_parallel() >= 2  # DSPy's own behaviour: the slow example is submitted again
    with never_resubmit():
        assert run_parallel() == 1


# 4. Labels are read strictly.
@pytest.mark.parametrize("line, message", [
    ({"text": "x", "is_procedural": "false"}, 'dev.jsonl:2: `is_procedural` must be true or false (a JSON boolean), got "false"'),
    ({"text": "x", "task_category": "banking"}, 'dev.jsonl:2: unknown `task_category` "banking"; choose from customer_support'),
])
def test_labels_are_parsed_strictly_naming_file_line_and_value(env, line, message):
    tmp, cli = env
    (tmp / "dev.jsonl").write_text(json.dumps({"text": "ok", "is_procedural": True}) + "\n" + json.dumps(line) + "\n")
    code, _, err = cli("eval", "--devset", "dev.jsonl", "--no-track")
    assert code == 2 and message in err and err.count("\n") == 1


def test_an_unlabelled_filtered_out_text_is_not_called_procedural():
    from gem_synth.optimizers.metrics import score_result
    from gem_synth.signatures.records import FilterLabels, Segment, SegmentResult

    result = SegmentResult(segment=Segment(id="s", source="x", text=STORY), outcome="filtered_out", stage="filter",
                           reason="a story", labels=FilterLabels(is_procedural=False))
    unlabelled = score_result(result, dspy.Example(text=STORY))
    assert "unlabelled" in unlabelled.text() and "procedural text" not in unlabelled.text()
    assert "filter" not in unlabelled.parts
    assert score_result(result, dspy.Example(text=STORY, is_procedural=False)).score == 1.0


# 5. Cached calls, paid calls, tokens and wall time are counted separately and add up over resumes.
def test_cost_numbers_tell_cached_from_paid_and_add_up_over_sessions(env):
    tmp, cli = env
    engine = ScriptedEngine(handlers())
    with FakeOpenAIServer(http_responder(engine)) as server:
        assert cli("run", "corpus", "--out", "a", "--no-track", "--no-progress", *_model(server, tmp))[0] == 0
        first = json.loads((tmp / "a" / "summary.json").read_text())
        # the same corpus in a new folder: every answer comes from DSPy's cache
        code, out, _ = cli("run", "corpus", "--out", "b", "--no-track", "--no-progress", *_model(server, tmp))
    second = json.loads((tmp / "b" / "summary.json").read_text())
    assert first["lm_calls"] == 7 and first["cached_calls"] == 0  # story: filter; claim: 6 calls of 5 stages
    assert second["lm_calls"] == 0 and second["cached_calls"] == 7 and second["prompt_tokens"] == 0
    assert "7 answered from the cache (free)" in out
    # cost per accepted trajectory counts every paid call of the run, the rejected story's filter call too
    assert first["per_accepted"]["lm_calls"] == 7.0
    sessions = (tmp / "a" / "sessions.jsonl").read_text().splitlines()
    assert len(sessions) == 1 and first["wall_seconds"] == pytest.approx(json.loads(sessions[0])["wall_seconds"])


def test_wall_time_adds_up_over_resumed_sessions(env):
    from gem_synth.running.summary import summarize

    tmp, _ = env
    run = tmp / "run"
    run.mkdir()
    (run / "journal.jsonl").write_text("")
    (run / "sessions.jsonl").write_text('{"wall_seconds": 100.0}\n{"wall_seconds": 20.5}\n')
    summary = summarize(run / "journal.jsonl", this_run_wall_seconds=20.5)
    assert summary.wall_seconds == 120.5 and summary.sessions == 2
    assert "120.5 s over 2 sessions (this one 20.5 s)" in summary.table()


def test_compare_shows_the_model_and_tells_counts_from_shares(env):
    import mlflow

    tmp, cli = env
    mlflow.set_experiment("cmp")
    for name, model, calls, score in (("one", "openai/gpt-4.1", 50, 0.5), ("two", "hosted_vllm/qwen", 3, 0.25)):
        with mlflow.start_run(run_name=name):
            mlflow.log_params({"lm.model": model})
            mlflow.log_metrics({"lm_calls": calls, "score": score})
    with mlflow.start_run(run_name="one"):  # a failed run of the same name is left out
        mlflow.log_params({"lm.model": "gpt4"})
    client = mlflow.tracking.MlflowClient()
    failed = client.search_runs([mlflow.get_experiment_by_name("cmp").experiment_id], order_by=["attributes.start_time DESC"])[0]
    client.set_terminated(failed.info.run_id, status="FAILED")
    with mlflow.start_run(run_name="two"):
        mlflow.log_params({"lm.model": "hosted_vllm/qwen"})
        mlflow.log_metrics({"lm_calls": 0, "score": 1.0, "complexity.distinct_tools_used.mean": 8.6})
    code, out, _ = cli("compare", "--experiment", "cmp")
    assert code == 0
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert lines["metric"][0].startswith("two:") and lines["metric"][1].startswith("two:") and lines["metric"][2] == "one"
    assert lines["model"] == ["hosted_vllm/qwen", "hosted_vllm/qwen", "openai/gpt-4.1"]
    assert lines["lm_calls"] == ["0", "3", "50"] and lines["score"] == ["1.000", "0.250", "0.500"]
    assert lines["complexity.distinct_tools_used.mean"] == ["8.600", "-", "-"]
    header = out.splitlines()[0]
    assert all(len(line) == len(header) for line in out.splitlines()[:4])  # columns line up


# 6. An outcome that makes the result worthless is said, and stops where continuing makes no sense.
def test_a_compile_that_scores_lower_is_not_saved(env):
    tmp, cli = env

    def generate(inputs):  # worse with demos: whatever bootstrap adds makes the program worse
        return {"trajectory": BROKEN if inputs["__demos__"] else CONVERSATION,
                "patterns_used": ["clarification", "rule_awareness", "multi_hop_reasoning"]}

    rows = [{"text": f"{PROCEDURE} (case {i})", "is_procedural": True} for i in range(4)]
    (tmp / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    (tmp / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[2:]))
    with FakeOpenAIServer(http_responder(ScriptedEngine(handlers({TrajectoryGeneration: generate})))) as server:
        code, out, err = cli("compile", "--optimizer", "bootstrap", "--trainset", "train.jsonl", "--devset",
                             "dev.jsonl", "--out", "compiled/worse.json", "--stage", "generate", "--no-track",
                             "--stages", "extract,generate,validate", *_model(server, tmp))
    assert code == 1 and "scored lower on the devset" in err and "not saved" in err
    assert not (tmp / "compiled" / "worse.json").exists()


def test_simba_with_too_few_examples_stops_before_any_lm_call(env):
    tmp, cli = env
    (tmp / "train.jsonl").write_text(json.dumps({"text": PROCEDURE}) + "\n")
    engine = ScriptedEngine(handlers())
    with FakeOpenAIServer(http_responder(engine)) as server:
        code, _, err = cli("compile", "--optimizer", "simba", "--trainset", "train.jsonl", "--devset", "train.jsonl",
                           "--out", "c.json", "--no-track", *_model(server, tmp))
    assert code == 2 and "simba needs at least --batch-size (8) training examples, got 1" in err
    assert sum(engine.calls.values()) == 0


def test_distil_refuses_a_teacher_run_that_accepted_nothing(env):
    tmp, cli = env
    reject_all = handlers({RelevanceFilter: lambda i: {"is_procedural": False, "summary": "no", "domain": "d",
                                                       "platform": "p", "task_category": "other"}})
    with FakeOpenAIServer(http_responder(ScriptedEngine(reject_all))) as server:
        assert cli("run", "corpus", "--out", "teacher", "--no-track", "--no-progress", *_model(server, tmp))[0] == 0
        code, _, err = cli("distil", "--teacher-run", "teacher", "--out", "s.json", "--no-track", *_model(server, tmp))
    assert code == 2 and "accepted no trajectory" in err


def test_a_jsonl_corpus_without_the_text_field_stops_in_one_line(env):
    tmp, cli = env
    (tmp / "docs.jsonl").write_text(json.dumps({"body": PROCEDURE, "url": "u"}) + "\n")
    code, _, err = cli("run", "docs.jsonl", "--out", "o", "--no-track", "--no-progress")
    assert code == 2 and err.count("\n") == 1
    assert "the first record has no field `text` (its fields: body, url); name the text field with --text-field" in err


def test_a_failed_provider_finetune_job_is_one_line(env, monkeypatch):
    tmp, cli = env
    from gem_synth.running.tables import save_rows

    save_rows([{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}], tmp / "sft")

    class Job:
        def result(self):
            return TypeError("the provider rejected the training file")

    monkeypatch.setattr(dspy.LM, "finetune", lambda self, **kw: Job())
    code, _, err = cli("finetune", "--data", "sft", "--base-model", "openai/gpt-4.1-mini", "--backend", "provider")
    assert code == 2 and err.count("\n") == 1
    assert "fine-tuning job failed: TypeError: the provider rejected the training file" in err


# 8. Small things a user expects.
def test_version_and_a_help_line_with_its_default_for_every_option(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("gem-synth 0.")
    parser = build_parser()
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, command in subcommands.items():
        for action in command._actions:
            assert action.help, f"gem-synth {name} {action.option_strings or action.dest} has no help line"
    assert "(default: 500)" in subcommands["run"].format_help()


def test_an_unknown_model_prints_one_line_no_provider_list_and_no_progress_bar(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.md").write_text(PROCEDURE)
    code = main(["run", "a.md", "--out", "o", "--lm", "gpt4", "--no-track"])
    out = capfd.readouterr()
    assert code == 2 and "Provider List" not in out.out + out.err
    assert out.err == "gem-synth: error: model 'gpt4' was not found: check the name and provider prefix\n"


def test_the_readme_python_snippet_runs_as_written_from_any_folder(tmp_path):
    import re
    import subprocess
    import sys

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = re.search(r"With `.venv/bin/python`, from any folder:\n\n```python\n(.*?)```", readme, re.S).group(1)
    done = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("accepted") and "FM-204817" in done.stdout


# 9. What is installed never shadows a user's own modules.
def test_only_gem_synth_is_installed_as_a_top_level_name(tmp_path):
    import subprocess
    import sys
    from importlib.metadata import distribution

    assert distribution("gem-synth").read_text("top_level.txt").split() == ["gem_synth"]
    (tmp_path / "programs.py").write_text("MINE = True\n")  # a user's own module of that name
    probe = "import programs, gem_synth.programs.pipeline as p; print(programs.MINE, p.__name__)"
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.split() == ["True", "gem_synth.programs.pipeline"], done.stderr
