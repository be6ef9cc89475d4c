"""The embedded SmolLM2-135M through llama.cpp: real DSPy calls, real grammar-constrained output.

Slow (a few minutes on 2 cores), marked `local_model`; CI runs it. The model is far too
small to do the task well, so these tests assert what it must guarantee (typed,
parsed output and a complete, accounted run), not the quality of the content.
"""

import json
import pickle
import shutil
from pathlib import Path

import datasets
import dspy
import pytest

from gem_synth.cli.main import main
from gem_synth.programs.adapter import GEMJSONAdapter
from gem_synth.backends.embedded import LlamaCppEngine, capped
from gem_synth.backends.models import ModelSpec, build_lm
from gem_synth.programs.validator import errors, validate
from gem_synth.signatures import (
    ComplexityRefinement,
    HallucinationJudge,
    RelevanceFilter,
    TrajectoryGeneration,
    WorkflowExtraction,
)
from gem_synth.signatures.conversation import Conversation, conversation_over
from gem_synth.signatures.drafts import ToolSpec
from gem_synth.signatures.records import RubricVerdict, Trajectory
from gem_synth.signatures.workflow import Workflow
from tests.fixtures import CONVERSATION, PROCEDURE, TOOL_SPECS, WORKFLOWS, trajectory

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "corpus"
pytestmark = pytest.mark.local_model


@pytest.fixture(scope="module")
def local_lm():
    lm = build_lm(ModelSpec(), cache=False)
    with dspy.context(lm=lm, adapter=GEMJSONAdapter(), track_usage=True):
        yield lm


def _call(signature, max_tokens=None, **inputs):
    config = {"max_tokens": max_tokens} if max_tokens else {}
    out = dspy.Predict(signature)(**inputs, config=config)
    usage = out.get_lm_usage()["local/smollm2-135m-instruct"]
    assert usage["prompt_tokens"] > 100 and usage["completion_tokens"] > 0
    return out


def test_filter_returns_typed_labels(local_lm):
    out = _call(RelevanceFilter, text=PROCEDURE)
    assert isinstance(out.is_procedural, bool) and isinstance(out.summary, str)
    assert out.task_category in RelevanceFilter.output_fields["task_category"].annotation.__args__


def test_extraction_returns_workflows_and_tool_specs(local_lm):
    out = _call(WorkflowExtraction, text=PROCEDURE, summary="Filing a claim.", domain="health insurance")
    assert all(isinstance(w, Workflow) for w in out.workflows)
    assert all(isinstance(t, ToolSpec) for t in out.tools) and out.tools
    for spec in out.tools:
        spec.to_tool()  # always convertible to an OpenAI tool


def test_generation_over_the_tool_set_is_rule_valid(local_lm):
    """Under the per-segment schema even a 135M model writes calls only to the given tools, with their
    arguments, in a well-formed conversation: every error rule passes (content is another matter)."""
    specs = [ToolSpec(**t) for t in TOOL_SPECS]
    signature = TrajectoryGeneration.with_updated_fields("trajectory", type_=conversation_over(specs))
    out = _call(signature, text=PROCEDURE, workflows=[Workflow(**w) for w in WORKFLOWS], tools=specs)
    assert isinstance(out.trajectory, Conversation) and len(out.trajectory.rounds) <= 3  # the engine's cap
    record = Trajectory(tools=[s.to_tool() for s in specs], messages=out.trajectory.to_messages()).to_openai()
    assert errors(validate(record)) == []
    calls = [c["function"]["name"] for m in record["messages"] for c in m.get("tool_calls") or []]
    assert calls and set(calls) <= {s.name for s in specs}


def test_refinement_rewrites_against_the_tool_set(local_lm):
    specs = [ToolSpec(**t) for t in TOOL_SPECS]
    signature = ComplexityRefinement.with_updated_fields("refined_trajectory", type_=conversation_over(specs))
    out = _call(signature, text=PROCEDURE, workflows=[Workflow(**w) for w in WORKFLOWS], tools=specs,
                trajectory=Conversation.model_validate(CONVERSATION), known_issues=[])
    record = Trajectory(tools=[s.to_tool() for s in specs], messages=out.refined_trajectory.to_messages()).to_openai()
    assert errors(validate(record)) == []


def test_judge_returns_three_verdicts(local_lm):
    traj = trajectory()
    out = _call(HallucinationJudge, tools=traj.tools, conversation=traj.transcript(),
                claimed_patterns=["clarification"])
    for name in ("tool_call_hallucination", "capability_hallucination", "context_hallucination"):
        assert isinstance(getattr(out, name), RubricVerdict)


def test_engine_is_picklable_and_saves_its_state():
    engine = LlamaCppEngine()
    clone = pickle.loads(pickle.dumps(engine))
    assert clone.dump_state() == engine.dump_state()
    assert LlamaCppEngine.load_state(engine.dump_state()).model_path == engine.model_path


def test_caps_bound_arrays_and_strings_but_not_enums():
    schema = {"type": "object", "properties": {
        "trajectory": {"type": "array", "items": {"type": "object", "properties": {
            "tool_calls": {"type": "array", "items": {"type": "string"}}}}},
        "tools": {"type": "array", "items": {"type": "string"}},
        "kind": {"type": "string", "enum": ["read", "write"]},
    }}
    out = capped(schema, 3, 50, {"trajectory": 9})
    props = out["properties"]
    assert props["trajectory"]["maxItems"] == 9 and props["tools"]["maxItems"] == 3
    assert props["trajectory"]["items"]["properties"]["tool_calls"]["maxItems"] == 2
    assert props["tools"]["items"]["maxLength"] == 50 and "maxLength" not in props["kind"]
    assert "maxItems" not in schema["properties"]["tools"]  # the original is untouched


def test_cli_run_on_two_example_texts_writes_an_accounted_dataset(tmp_path, monkeypatch, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("health-insurance-claim.md", "news-rainfall.md"):
        shutil.copy(EXAMPLES / name, corpus / name)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    code = main(["run", str(corpus), "--out", str(tmp_path / "out"), "--no-progress",
                 "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    trajectories = datasets.load_from_disk(str(tmp_path / "out" / "trajectories"))
    rejects = datasets.load_from_disk(str(tmp_path / "out" / "rejects"))
    assert trajectories.num_rows + rejects.num_rows == 2
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["segments"] == 2 and summary["lm_calls"] >= 2 and summary["completion_tokens"] > 0
    assert all(r["reason"] for r in rejects)  # every reject says why
    assert "tokens" in capsys.readouterr().out
