"""Near-duplicate segments cost no LM call; diversity of the output is measured."""

import json
import os

import datasets
import pytest

from gem_synth.cli.main import main
from gem_synth.running.dedup import NearDuplicateIndex, clusters, shingles
from tests.fake_openai import FakeOpenAIServer
from tests.fixtures import PROCEDURE, STORY, handlers
from tests.scripted import ScriptedEngine, http_responder

NEAR_COPY = PROCEDURE.replace("attach the receipt", "attach the invoice")  # one word changed


def test_a_one_word_edit_is_a_near_copy_and_a_different_text_is_not():
    index = NearDuplicateIndex(0.8)
    assert index.twin("a", PROCEDURE) is None
    twin = index.twin("b", NEAR_COPY)
    assert twin is not None and twin[0] == "a" and 0.8 <= twin[1] < 1.0
    assert index.twin("c", STORY) is None
    assert index.twin("a", PROCEDURE)[0] == "b"  # seen again: its twin is the other one, never itself


def test_threshold_is_checked():
    with pytest.raises(ValueError, match="threshold must be in"):
        NearDuplicateIndex(1.5)


def test_clusters_group_near_identical_sets():
    groups = clusters([("x", shingles(PROCEDURE)), ("y", shingles(NEAR_COPY)), ("z", shingles(STORY))], threshold=0.5)
    assert sorted(map(sorted, groups)) == [["x", "y"], ["z"]]


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("DSPY_CACHEDIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.md").write_text(PROCEDURE)
    (corpus / "b_near_copy.md").write_text(NEAR_COPY)
    (corpus / "c_story.md").write_text(STORY)
    return tmp_path


def _run(server, *extra):
    return main(["run", "corpus", "--out", "out", "--lm", "hosted_vllm/scripted", "--api-base", server.url,
                 "--num-retries", "0", "--no-progress", "--no-track", "--cache-dir", os.environ["DSPY_CACHEDIR"],
                 "--workers", "1", *extra])


def test_a_near_copy_costs_no_lm_call_and_names_its_twin(env):
    engine = ScriptedEngine(handlers())
    with FakeOpenAIServer(http_responder(engine)) as server:
        assert _run(server) == 0
        assert engine.calls["RelevanceFilter"] == 2  # a.md and the story; not the near copy
        rejects = {r["source"].rsplit("/", 1)[-1]: r for r in datasets.load_from_disk("out/rejects")}
        trajectories = datasets.load_from_disk("out/trajectories")
        near = rejects["b_near_copy.md"]
        assert near["outcome"] == "duplicate" and near["lm_calls"] == 0
        assert near["reason"].startswith(f"near-copy of segment {trajectories[0]['id']} (estimated Jaccard 0.")
        # resume: the same decisions, no call at all
        calls = sum(engine.calls.values())
        assert _run(server) == 0 and sum(engine.calls.values()) == calls
        assert json.loads((env / "out" / "summary.json").read_text())["outcomes"] == {
            "accepted": 1, "duplicate": 1, "filtered_out": 1}


def test_near_duplicate_detection_can_be_turned_off(env):
    engine = ScriptedEngine(handlers())
    with FakeOpenAIServer(http_responder(engine)) as server:
        assert _run(server, "--near-duplicates", "0") == 0
    assert engine.calls["RelevanceFilter"] == 3


def test_diversity_on_real_trajectories():
    from gem_synth.running.summary import diversity

    sample = [json.loads(line) for line in (env_root() / "examples" / "sample-output" / "trajectories.jsonl")
              .read_text().splitlines()]
    records = [{"id": r["id"], "labels": {"domain": f"d{i % 3}", "task_category": "other", "platform": "p"},
                "trajectory": {"tools": json.loads(r["tools"]), "messages": r["messages"]}}
               for i, r in enumerate(sample)]
    d = diversity(records + [{**records[0], "id": "copy"}])  # one tool-set design and request repeated
    assert d["domains"] == 3 and d["task_categories"] == 1 and d["tool_names"] > 100
    assert d["tool_set_designs"] == len(sample) and d["largest_tool_set_share"] == pytest.approx(2 / (len(sample) + 1))
    assert d["first_request_clusters"] == len(sample)


def env_root():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent
