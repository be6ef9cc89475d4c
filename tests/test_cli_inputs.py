"""Bad input gets one clear line and the right exit status, never a traceback."""

import json

import pytest

from gem_synth.cli.main import main
from gem_synth.running.corpus import CorpusOptions, Unreadable, read_corpus, segment_text
from tests.fixtures import openai_record


@pytest.fixture
def run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def go(*args):
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err
    return go


def _bad_inputs(tmp_path):
    (tmp_path / "empty.md").write_text("")
    (tmp_path / "blank.txt").write_text("   \n\n ")
    (tmp_path / "binary.txt").write_bytes(b"\x89PNG\x00\x00\x01")
    (tmp_path / "latin1.txt").write_bytes("Caf\xe9 au lait".encode("latin-1"))
    (tmp_path / "sheet.xlsx").write_bytes(b"PK\x03\x04")
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "emptydir").mkdir()
    return {
        "missing": (tmp_path / "nope.md", "nope.md: no such file or folder"),
        "empty": (tmp_path / "empty.md", "empty.md: empty file"),
        "blank": (tmp_path / "blank.txt", "blank.txt: empty file"),
        "binary": (tmp_path / "binary.txt", "binary.txt: binary file, not text"),
        "non-utf8": (tmp_path / "latin1.txt", "latin1.txt: not UTF-8 text (byte 3)"),
        "unknown format": (tmp_path / "sheet.xlsx", "sheet.xlsx: unknown format .xlsx; expected one of"),
        "empty jsonl": (tmp_path / "empty.jsonl", "empty.jsonl: empty file"),
        "empty folder": (tmp_path / "emptydir", "emptydir: folder has no files"),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "blank", "binary", "non-utf8", "unknown format",
                                  "empty jsonl", "empty folder"])
def test_bad_corpus_is_one_line_exit_2(run, tmp_path, case):
    path, message = _bad_inputs(tmp_path)[case]
    code, out, err = run("run", str(path), "--out", str(tmp_path / "out"), "--no-track")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("gem-synth: error: ") and message in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_bad_jsonl_lines_become_rejects_naming_file_and_line(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text(json.dumps({"text": "Sign in, open Claims, submit."}) + "\n{oops\n"
                    + json.dumps({"body": "no text field"}) + "\n")
    items = list(read_corpus(str(path), CorpusOptions()))
    assert [type(i).__name__ for i in items] == ["Segment", "Unreadable", "Unreadable"]
    assert items[1] == Unreadable(f"{path}:2", "line is not JSON (Expecting property name enclosed in double quotes)")
    assert items[2] == Unreadable(f"{path}:3", "no text in field `text`")


def test_folder_records_bad_files_and_reads_good_ones(tmp_path):
    (tmp_path / "good.md").write_text("Step one. Step two.")
    (tmp_path / "bad.bin").write_bytes(b"\x00")
    (tmp_path / ".hidden.md").write_text("ignored")
    items = list(read_corpus(str(tmp_path), CorpusOptions()))
    assert [(type(i).__name__, i.source.rsplit("/", 1)[-1]) for i in items] == [("Unreadable", "bad.bin"),
                                                                                ("Segment", "good.md")]


def test_html_keeps_text_drops_markup_and_scripts(tmp_path):
    page = tmp_path / "page.html"
    page.write_text("<html><head><script>var x = 1;</script><style>p{}</style></head><body>"
                    "<h1>Reset</h1><p>Open the <b>portal</b>.</p><ol><li>Enter ID</li><li>Submit</li></ol></body>")
    [segment] = list(read_corpus(str(page), CorpusOptions()))
    assert segment.text == "Reset\n\nOpen the portal.\n\nEnter ID\n\nSubmit"


def test_segments_are_paragraph_aligned_near_the_target_size():
    paragraphs = [" ".join(f"w{p}_{i}" for i in range(120)) for p in range(10)]
    segments = segment_text("\n\n".join(paragraphs), target_words=300)
    assert [len(s.split()) for s in segments] == [240, 240, 240, 240, 240]
    assert all(s.split("\n\n")[0] in paragraphs for s in segments)
    long = " ".join(f"Sentence number {i} ends here." for i in range(200))  # one 1000-word paragraph
    assert max(len(s.split()) for s in segment_text(long, target_words=100)) <= 100


def test_segment_ids_are_stable_and_positional(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("Alpha one.\n\nBeta two.")
    first = [s.id for s in read_corpus(str(doc), CorpusOptions(segment_words=2))]
    again = [s.id for s in read_corpus(str(doc), CorpusOptions(segment_words=2))]
    assert first == again and len(set(first)) == 2


def test_saved_hf_dataset_is_a_corpus(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"body": ["Sign in. Open Claims. Submit.", ""]}).save_to_disk(str(tmp_path / "ds"))
    items = list(read_corpus(str(tmp_path / "ds"), CorpusOptions(text_column="body")))
    assert type(items[0]).__name__ == "Segment" and items[0].source.endswith("ds[train][0]")
    assert items[1].reason == "no text in column `body`"
    with pytest.raises(Exception, match="no column 'text'; columns are body"):
        list(read_corpus(str(tmp_path / "ds"), CorpusOptions()))


def test_unknown_stage_and_bad_config_are_one_line(run, tmp_path):
    (tmp_path / "a.md").write_text("Sign in. Submit.")
    code, _, err = run("run", str(tmp_path / "a.md"), "--out", str(tmp_path / "o"), "--stages", "filter,rewrite")
    assert code == 2 and "unknown stage(s) ['rewrite']" in err and err.count("\n") == 1
    (tmp_path / "bad.toml").write_text("[lm\nmodel=")
    code, _, err = run("run", str(tmp_path / "a.md"), "--out", str(tmp_path / "o"), "--config",
                       str(tmp_path / "bad.toml"))
    assert code == 2 and "is not valid TOML" in err


def test_validate_exit_codes_and_report(run, tmp_path):
    good = openai_record()
    bad = openai_record()
    bad["messages"][2]["tool_calls"][0]["function"]["name"] = "nope"
    bad["messages"].append({"role": "user", "content": "bye"})
    (tmp_path / "good.json").write_text(json.dumps(good))
    (tmp_path / "mixed.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    (tmp_path / "broken.jsonl").write_text(json.dumps(good) + "\n{not json\n")
    assert run("validate", str(tmp_path / "good.json"))[0] == 0
    code, out, _ = run("validate", str(tmp_path / "mixed.jsonl"))
    assert code == 1
    assert "line 2: C001 unknown_tool at message 2: `nope` is not a defined tool" in out
    assert "line 2: O004 last_not_assistant_text at message 9" in out
    assert "2 record(s) checked with the gem rules: 1 with errors" in out and "  C001 unknown_tool" in out
    # one bad JSONL line is a finding of its own; the other lines are still checked (issue 18, item 7)
    code, out, _ = run("validate", str(tmp_path / "broken.jsonl"))
    assert code == 1 and "line 2: M001 message_malformed at tools: not JSON" in out
    assert "2 record(s) checked with the gem rules: 1 with errors" in out
    assert run("validate", str(tmp_path / "missing.json"))[0] == 2


def test_validate_grounding_warnings_pass_unless_strict(run, tmp_path):
    record = openai_record()
    record["messages"][2]["tool_calls"][0]["function"]["arguments"] = json.dumps({"patient_id": "P-999"})
    (tmp_path / "w.json").write_text(json.dumps(record))
    code, out, _ = run("validate", str(tmp_path / "w.json"))
    assert code == 0 and "G001 ungrounded_argument" in out and "(warning)" in out and "1 with warnings only" in out
    code, out, _ = run("validate", "--strict-grounding", str(tmp_path / "w.json"))
    assert code == 1 and "1 with errors, counting warnings" in out


def test_validate_rule_sets_tell_a_foreign_convention_from_a_broken_record(run, tmp_path):
    record = openai_record()
    record["messages"].pop(0)
    (tmp_path / "public.json").write_text(json.dumps(record))
    code, out, _ = run("validate", "--rules", "openai", str(tmp_path / "public.json"))
    assert code == 0 and "checked with the openai rules: 0 with errors" in out
    code, out, _ = run("validate", str(tmp_path / "public.json"))
    assert code == 1 and "O001 first_not_system" in out


def test_validate_reads_tools_as_a_json_string(run, tmp_path):
    record = openai_record()
    record["tools"] = json.dumps(record["tools"])
    (tmp_path / "r.json").write_text(json.dumps([record]))
    assert run("validate", str(tmp_path / "r.json"))[0] == 0


def test_unreachable_model_stops_the_run_in_one_line_before_any_segment(run, tmp_path):
    import socket

    (tmp_path / "a.md").write_text("Sign in. Open Claims. Submit the form.")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err = run("run", str(tmp_path / "a.md"), "--out", str(tmp_path / "o"), "--no-track", "--no-progress",
                       "--lm", "hosted_vllm/m", "--api-base", f"http://127.0.0.1:{port}/v1")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("gem-synth: error: cannot reach hosted_vllm/m at http://127.0.0.1:")
    assert not (tmp_path / "o" / "journal.jsonl").exists() or (tmp_path / "o" / "journal.jsonl").read_text() == ""


@pytest.mark.parametrize("args, message", [
    (["--ray-actors", "2"], "--ray-address and --ray-actors need --engine ray"),
    (["--engine", "ray", "--ray-actors", "0"], "--ray-actors must be at least 1"),
    (["--engine", "ray", "--trace"], "--trace needs --engine local"),
    (["--engine", "ray", "--ray-address", "localhost:notaport"], "--ray-address localhost:notaport: not HOST:PORT"),
    (["--engine", "ray", "--ray-address", "127.0.0.1:99999"], "--ray-address 127.0.0.1:99999: not HOST:PORT"),
])
def test_bad_engine_settings_are_one_line_exit_2(run, tmp_path, args, message):
    (tmp_path / "doc.md").write_text("To file a claim, sign in, open Claims and press Submit.")
    code, out, err = run("run", str(tmp_path / "doc.md"), "--out", str(tmp_path / "out"), "--no-track",
                         "--lm", "hosted_vllm/x", "--api-base", "http://127.0.0.1:9/v1", *args)
    assert code == 2
    assert err.strip().splitlines()[-1].startswith(f"gem-synth: error: {message}"), err
    assert "Traceback" not in err
