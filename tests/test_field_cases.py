"""The tool-use records from the field in ../shared/cases/datasets, each with the outcome a user expects.

Each case is one member of a kind (see that folder's README): arguments given as JSON
objects, text beside a tool call, parallel results out of order, Arrow null padding,
nullable parameter types. They go through `validate`, every export (Python and the
command line, which reads a plain JSON/JSONL file) and the chat-template form.
"""

import json
from pathlib import Path

import datasets
import pytest

from gem_synth.cli.main import main
from gem_synth.running.exports import FORMATS, SHAREGPT_TEXT_DROPPED, for_template, hermes_calls, to_hermes, to_sharegpt, write_export

CASES = Path(__file__).resolve().parents[2] / "shared" / "cases" / "datasets"
pytestmark = pytest.mark.skipif(not CASES.is_dir(), reason="../shared/cases is beside the project on development machines")


def load(name):
    text = (CASES / name).read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()] if name.endswith(".jsonl") else [json.loads(text)]


def test_parallel_results_out_of_order_are_exported_in_call_order():
    record = load("09-parallel-results-out-of-order.json")[0]
    # hermes: the first <tool_response> answers the first <tool_call> (SKU-RED gets 12 units)
    messages = to_hermes(record)["messages"]
    calls = hermes_calls(next(m["content"] for m in messages if m["role"] == "assistant" and "<tool_call>" in m["content"]))
    responses = [m["content"] for m in messages if m["role"] == "tool"]
    assert [c["arguments"]["sku"] for c in calls] == ["SKU-RED", "SKU-BLUE"]
    assert '"units": 12' in responses[0] and '"units": 0' in responses[1]
    # sharegpt: one observation listing the results in call order
    turns = to_sharegpt(record)["conversations"]
    observation = json.loads(next(t["value"] for t in turns if t["from"] == "observation"))
    assert [json.loads(o)["units"] for o in observation] == [12, 0]
    # templates that pair by position, and Llama 3.1's one call per turn
    for split in (False, True):
        out = for_template(record, arguments="dict", split_parallel=split)
        tools = [m for m in out["messages"] if m["role"] == "tool"]
        assert [t["tool_call_id"] for t in tools] == ["call_s1", "call_s2"]


def test_text_beside_a_call_is_kept_where_the_format_has_room_and_counted_where_not(tmp_path):
    record = load("08-assistant-text-with-tool-call.json")[0]
    text = "Let me look up tracking code ZX-99120 for you."
    hermes = to_hermes(record)["messages"]
    assert any(m["role"] == "assistant" and m["content"].startswith(text) and "<tool_call>" in m["content"]
               for m in hermes)
    report = write_export([record], "openai", tmp_path / "o.jsonl")
    assert report.written == 1 and json.loads((tmp_path / "o.jsonl").read_text())["messages"][1]["content"] == text
    report = write_export([record], "sharegpt", tmp_path / "s.jsonl")
    assert report.written == 1 and report.warnings == {SHAREGPT_TEXT_DROPPED: 1}
    turns = json.loads((tmp_path / "s.jsonl").read_text())["conversations"]
    assert [t["from"] for t in turns] == ["human", "function_call", "observation", "gpt"]


def test_arguments_given_as_objects_export_as_strings_into_one_column(tmp_path):
    records = load("01-arguments-as-object.jsonl")
    for fmt in ("openai", "hermes", "sharegpt"):
        report = write_export(records, fmt, tmp_path / fmt)
        assert report.written == 2 and not report.left_out, (fmt, report.left_out)
        assert sum(n for w, n in report.warnings.items() if w.startswith("C007")) == 2
    rows = datasets.load_from_disk(str(tmp_path / "openai"))
    arguments = [m["tool_calls"][0]["function"]["arguments"] for r in rows for m in r["messages"] if m.get("tool_calls")]
    assert all(isinstance(a, str) for a in arguments)
    assert json.loads(arguments[1])["slot"] == 1930000000


def test_arrow_null_padding_is_left_out_with_a_reason_never_a_crash(tmp_path):
    record = load("10-arrow-null-padded-tool-schema.json")[0]
    for fmt in FORMATS:
        report = write_export([record], fmt, tmp_path / f"{fmt}.jsonl")
        assert report.written == 0 and "Arrow/Parquet null padding" in report.left_out[0]
        assert (tmp_path / f"{fmt}.jsonl").read_text() == ""  # an empty export is still written


def test_nullable_parameters_and_null_values_are_kept_verbatim(tmp_path):
    record = load("11-nullable-parameter-types.json")[0]
    report = write_export([record], "openai", tmp_path / "o.jsonl")
    assert report.written == 1
    out = json.loads((tmp_path / "o.jsonl").read_text())
    assert json.loads(out["tools"]) == record["tools"]
    assert [m.get("tool_calls") for m in out["messages"]] == [m.get("tool_calls") for m in record["messages"]]


def test_export_converts_a_plain_jsonl_file(tmp_path, capsys):
    src = tmp_path / "mine.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in load("01-arguments-as-object.jsonl")) + "\n{oops\n")
    assert main(["export", "--format", "hermes", str(src), str(tmp_path / "h.jsonl")]) == 0
    out = capsys.readouterr()
    assert "hermes: 2 trajectories" in out.out and "(1 left out)" in out.out
    assert "left out: line 3: not JSON" in out.err
    assert len((tmp_path / "h.jsonl").read_text().splitlines()) == 2


def test_non_ascii_text_stays_literal(tmp_path):
    record = load("08-assistant-text-with-tool-call.json")[0]
    record["messages"][0]["content"] = "Où est mon colis ZX-99120 ? 包裹"
    for fmt in ("openai", "hermes", "sharegpt"):
        write_export([record], fmt, tmp_path / f"{fmt}.jsonl")
        assert "Où est mon colis" in (tmp_path / f"{fmt}.jsonl").read_text(encoding="utf-8")
