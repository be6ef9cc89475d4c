"""`gem-synth run` end to end through the CLI, against scripted answers served over HTTP.

Each corpus file triggers one outcome, so one run shows them all; the tests then read
the written datasets back with `datasets` and the MLflow store with `mlflow`.
"""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import datasets
import pytest

from gem_synth.cli.main import main
from gem_synth.signatures import ComplexityRefinement, HallucinationJudge, TrajectoryGeneration, WorkflowExtraction
from tests.fake_openai import FakeOpenAIServer
from tests.fixtures import BROKEN, PROCEDURE, STORY, TOOL_SPECS, handlers, verdicts
from tests.scripted import ScriptedEngine, http_responder, server_error

ROOT = Path(__file__).resolve().parent.parent


def outcome_handlers(outage: dict):
    """Scripted stages keyed on markers in the text."""
    base = handlers()

    def extract(i):
        if "OUTAGE" in i["text"] and outage["on"]:
            return server_error()
        return base[WorkflowExtraction](i)

    def generate(i):
        return "I cannot produce JSON today." if "GARBAGE" in i["text"] else base[TrajectoryGeneration](i)

    def refine(i):
        if "BROKEN" in i["text"]:
            return {"refined_trajectory": BROKEN, "patterns_used": []}
        return base[ComplexityRefinement](i)

    def judge(i):
        return verdicts(r2=False) if "capability" in i["conversation"] else base[HallucinationJudge](i)

    return handlers({WorkflowExtraction: extract, TrajectoryGeneration: generate, ComplexityRefinement: refine,
                     HallucinationJudge: judge})


def make_corpus(folder: Path) -> Path:
    folder.mkdir()
    (folder / "a_claim.md").write_text(PROCEDURE)
    (folder / "b_story.md").write_text(STORY)
    (folder / "c_garbage.md").write_text(PROCEDURE + " GARBAGE claim variant.")
    (folder / "d_broken.md").write_text(PROCEDURE + " BROKEN claim variant.")
    (folder / "e_outage.md").write_text(PROCEDURE + " OUTAGE claim variant.")
    (folder / "f_copy.md").write_text(PROCEDURE)  # an exact duplicate of a_claim.md
    (folder / "g_binary.txt").write_bytes(b"\x00\x01\x02binary")
    return folder


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("DSPY_CACHEDIR", str(tmp_path / "dspy-cache"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_cli(server, corpus, out, *extra):
    return main(["run", str(corpus), "--out", str(out), "--lm", "hosted_vllm/scripted", "--api-base", server.url,
                 "--api-key", "sk-secret-test-key", "--num-retries", "0", "--no-progress", "--workers", "3",
                 "--cache-dir", os.environ["DSPY_CACHEDIR"], "--near-duplicates", "0", *extra])


def test_every_outcome_is_accounted_for_and_a_rerun_costs_nothing(env, capsys, engine):
    corpus = make_corpus(env / "corpus")
    outage = {"on": True}
    scripted = ScriptedEngine(outcome_handlers(outage))
    with FakeOpenAIServer(http_responder(scripted)) as server:
        assert run_cli(server, corpus, env / "out", *engine) == 0
        first_requests = len(server.requests)

        trajectories = datasets.load_from_disk(str(env / "out" / "trajectories"))
        rejects = datasets.load_from_disk(str(env / "out" / "rejects"))
        assert trajectories.num_rows == 1
        row = trajectories[0]
        assert row["source"].endswith("a_claim.md") and row["task_category"] == "healthcare"
        assert [t["function"]["name"] for t in json.loads(row["tools"])] == [s["name"] for s in TOOL_SPECS]
        assert row["messages"][2]["tool_calls"][0]["function"]["arguments"] == '{"patient_id": "P-100"}'
        assert row["stats"]["tool_calls"] == 2 and row["judge"]["tool_call_hallucination"]["passed"]
        assert row["lm_calls"] == 6 and row["prompt_tokens"] > 0
        outcomes = Counter(rejects["outcome"])
        assert outcomes == {"filtered_out": 1, "parse_error": 1, "rule_violations": 1, "lm_error": 1,
                            "duplicate": 1, "unreadable": 1}
        by_outcome = {r["outcome"]: r for r in rejects}
        assert by_outcome["rule_violations"]["violation_codes"] == ["O006"]
        assert by_outcome["parse_error"]["stage"] == "generate"
        assert by_outcome["unreadable"]["reason"] == "binary file, not text"
        assert by_outcome["duplicate"]["reason"] == f"same text as segment {row['id']}"
        ids = list(trajectories["id"]) + list(rejects["id"])
        assert len(ids) == len(set(ids)) == 7  # every corpus file, each in exactly one table

        summary = json.loads((env / "out" / "summary.json").read_text())
        assert summary["segments"] == 7 and summary["accepted"] == 1
        assert summary["violation_codes"] == {"O006": 1}
        assert summary["complexity"]["tool_calls"]["mean"] == 2.0
        assert "yield" in capsys.readouterr().out

        # Rerun: only the transient LM error is tried again; the healed server accepts it.
        outage["on"] = False
        assert run_cli(server, corpus, env / "out", *engine) == 0
        rerun_requests = server.requests[first_requests:]
        assert rerun_requests[0]["body"]["messages"][-1]["content"] == "Reply with the word OK."  # pre-flight
        assert {json.dumps(r["body"]["messages"][-1]["content"]).count("OUTAGE") > 0
                for r in rerun_requests[1:]} == {True}
        assert datasets.load_from_disk(str(env / "out" / "trajectories")).num_rows == 2
        assert Counter(datasets.load_from_disk(str(env / "out" / "rejects"))["outcome"])["lm_error"] == 0

        # A completed run, rerun: no LM call at all, not even the pre-flight check.
        before = len(server.requests)
        assert run_cli(server, corpus, env / "out", *engine) == 0
        assert len(server.requests) == before


def test_mlflow_run_records_params_metrics_artifacts_and_never_the_key(env):
    import mlflow

    corpus = make_corpus(env / "corpus")
    with FakeOpenAIServer(http_responder(ScriptedEngine(outcome_handlers({"on": True})))) as server:
        assert run_cli(server, corpus, env / "out", "--experiment", "gem-test", "--trace") == 0
    runs = mlflow.search_runs(experiment_names=["gem-test"], output_format="list")
    assert len(runs) == 1
    run = runs[0]
    assert run.data.params["lm.model"] == "hosted_vllm/scripted"
    assert run.data.params["stages"] == repr(["filter", "extract", "generate", "refine", "validate", "judge"])
    assert run.data.metrics["accepted"] == 1 and run.data.metrics["segments"] == 7
    assert run.data.metrics["violations.O006"] == 1
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"summary.json", "summary.txt", "program.json", "sample_trajectories.jsonl"} <= artifacts
    traces = mlflow.search_traces(experiment_ids=[run.info.experiment_id], return_type="list")
    assert len(traces) >= 5  # --trace: one trace per segment that reached the program
    stored = b"".join(p.read_bytes() for p in env.rglob("*") if p.is_file() and "dspy-cache" not in str(p))
    assert b"sk-secret-test-key" not in stored


def test_other_settings_in_the_same_out_folder_are_refused(env, capsys):
    corpus = make_corpus(env / "corpus")
    with FakeOpenAIServer(http_responder(ScriptedEngine(outcome_handlers({"on": False})))) as server:
        assert run_cli(server, corpus, env / "out", "--no-track") == 0
        assert run_cli(server, corpus, env / "out", "--no-track", "--stages", "filter,extract,generate,judge") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("gem-synth: error: ") and "other settings (program_hash, stages)" in err


KILL_SCRIPT = """
import json, sys, time
sys.path.insert(0, {root!r})
from tests.fake_openai import FakeOpenAIServer
from tests.scripted import ScriptedEngine, http_responder
from tests.fixtures import CONVERSATION, handlers
from gem_synth.signatures import ComplexityRefinement, TrajectoryGeneration
def per_case(i):  # a conversation of its own per segment, so no two segments share a request
    return {{**CONVERSATION, "system": CONVERSATION["system"] + " Case: " + i["text"][-4:]}}
engine = ScriptedEngine(handlers({{
    TrajectoryGeneration: lambda i: {{"trajectory": per_case(i), "patterns_used": []}},
    ComplexityRefinement: lambda i: {{"refined_trajectory": per_case(i), "patterns_used": []}},
}}))
respond = http_responder(engine)
log = open({log!r}, "a")
def slow(body):
    time.sleep(0.15)
    log.write(json.dumps(body["messages"]) + chr(10))
    log.flush()
    return respond(body)
with FakeOpenAIServer(slow) as server:
    print(server.url, flush=True)
    sys.stdin.read()
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_resume_after_kill_loses_nothing_duplicates_nothing_and_repeats_no_call(env, sig, engine):
    corpus = env / "corpus"
    corpus.mkdir()
    for i in range(12):
        (corpus / f"doc{i:02d}.md").write_text(f"{PROCEDURE} Claim case number {i}.")
    server = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT.format(root=str(ROOT), log=str(env / "requests.log"))], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().strip()
        cmd = [sys.executable, "-m", "gem_synth.cli", "run", str(corpus), "--out", str(env / "out"), "--lm",
               "hosted_vllm/scripted", "--api-base", url, "--no-progress", "--no-track", "--workers", "2",
               "--cache-dir", os.environ["DSPY_CACHEDIR"], "--near-duplicates", "0", *engine]
        child = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                 stderr=subprocess.PIPE, text=True)
        journal = env / "out" / "journal.jsonl"
        deadline = time.time() + 120
        while time.time() < deadline and (not journal.exists() or journal.read_text().count("\n") < 4):
            time.sleep(0.05)
        child.send_signal(sig)
        _, err = child.communicate(timeout=30)
        if sig == signal.SIGINT:  # Ctrl-C: a clean stop at once, with a word on how to go on
            assert child.returncode == 130
            assert err.strip().splitlines()[-1] == "gem-synth: interrupted; run the same command again to resume"
        finished_before = journal.read_text().count("\n")
        assert 4 <= finished_before < 12, "the kill must land half way"
        assert subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}).returncode == 0
    finally:
        server.stdin.close()
        server.wait(timeout=10)
    trajectories = datasets.load_from_disk(str(env / "out" / "trajectories"))
    rejects = datasets.load_from_disk(str(env / "out" / "rejects"))
    assert rejects.num_rows == 0 and trajectories.num_rows == 12
    assert len(set(trajectories["id"])) == 12
    sources = sorted(Path(s).name for s in trajectories["source"])
    assert sources == [f"doc{i:02d}.md" for i in range(12)]
    # A finished segment is never run again; of the segments in flight at the kill, stage
    # calls that had completed come back from the DSPy disk cache, so at most the calls
    # under way at the kill (one per worker) are sent twice.
    entries = [json.loads(line) for line in journal.read_text().splitlines()]
    first_ids = {e["id"] for e in entries[:finished_before]}
    assert not first_ids & {e["id"] for e in entries[finished_before:]}
    sessions = [json.loads(line) for line in (env / "out" / "sessions.jsonl").read_text().splitlines()]
    if sig == signal.SIGINT:  # a session stopped by Ctrl-C still counts in the wall time (kill -9 cannot)
        assert sessions[0]["interrupted"] and sessions[0]["segments"] == finished_before and len(sessions) == 2
    assert "interrupted" not in sessions[-1] and sessions[-1]["segments"] == 12 - finished_before
    requests = (env / "requests.log").read_text().splitlines()
    lm_requests = [r for r in requests if "Your output fields are" in r]
    assert len(lm_requests) - len(set(lm_requests)) <= 2
    assert len(set(lm_requests)) == 12 * 6
