"""PDF and DOCX corpora: real small files the tests make (fpdf2, python-docx), end to end through a run."""

import json

import datasets
import pytest

from gem_synth.cli.main import main
from gem_synth.running.corpus import Unreadable, read_corpus
from tests.fixtures import PROCEDURE, STORY

RECORDED = "examples/corpus/gym-membership.md"


def make_pdf(path, pages):
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=11)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 6, text)
    pdf.output(str(path))
    return path


def make_scanned_pdf(path):
    """A page that is only an image: no text layer, as a scan."""
    from fpdf import FPDF
    from PIL import Image

    import tempfile

    image = f"{tempfile.mkdtemp()}/scan.png"  # not beside the PDF: it would join the corpus
    Image.new("RGB", (200, 100), "white").save(image)
    pdf = FPDF()
    pdf.add_page()
    pdf.image(image, x=10, y=10, w=100)
    pdf.output(str(path))
    return path


def make_encrypted_pdf(path):
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_encryption(owner_password="owner", user_password="secret")
    pdf.add_page()
    pdf.set_font("helvetica", size=11)
    pdf.multi_cell(0, 6, PROCEDURE)
    pdf.output(str(path))
    return path


def make_docx(path, sections):
    import docx

    document = docx.Document()
    for title, paragraphs in sections:
        document.add_heading(title, level=1)
        for p in paragraphs:
            document.add_paragraph(p)
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Claim type", "Deadline"
    table.cell(1, 0).text, table.cell(1, 1).text = "Dental", "90 days"
    document.save(str(path))
    return path


def test_a_pdf_is_read_page_by_page_with_the_page_in_the_source(tmp_path):
    path = make_pdf(tmp_path / "policy.pdf", [PROCEDURE, STORY])
    items = list(read_corpus(str(path)))
    assert [i.source.rsplit("/", 1)[-1] for i in items] == ["policy.pdf#page=1", "policy.pdf#page=2"]
    assert "one active claim is allowed per visit" in " ".join(items[0].text.split()).lower()


def test_a_docx_is_read_section_by_section_with_tables(tmp_path):
    path = make_docx(tmp_path / "manual.docx", [("Filing a claim", [PROCEDURE]), ("History", [STORY])])
    items = list(read_corpus(str(path)))
    assert [i.source.rsplit("/", 1)[-1] for i in items] == ["manual.docx#section=Filing a claim",
                                                            "manual.docx#section=History"]
    assert items[0].text.startswith("Filing a claim\n\n" + PROCEDURE[:40])
    assert "Dental | 90 days" in items[1].text  # the table, in reading order


@pytest.mark.parametrize("maker, reason", [
    (make_scanned_pdf, "PDF has no text layer (1 page(s)): a scan? run OCR first"),
    (make_encrypted_pdf, "encrypted PDF: it needs a password"),
    (lambda p: p.write_bytes(b"%PDF-1.4\n%broken") and p, "not a readable PDF"),
])
def test_unreadable_pdfs_are_rejects_with_a_one_line_reason(tmp_path, maker, reason):
    path = tmp_path / "x.pdf"
    maker(path)
    [item] = list(read_corpus(str(path)))
    assert isinstance(item, Unreadable) and item.reason.startswith(reason) and "\n" not in item.reason


def test_a_broken_docx_is_a_reject(tmp_path):
    (tmp_path / "x.docx").write_bytes(b"PK\x03\x04 not really")
    [item] = list(read_corpus(str(tmp_path / "x.docx")))
    assert isinstance(item, Unreadable) and item.reason.startswith("not a readable DOCX")


def test_a_pdf_and_docx_corpus_runs_end_to_end(tmp_path, monkeypatch):
    """Real documents carrying the recorded example text, through the recorded strong-model answers."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    monkeypatch.chdir(tmp_path)
    text = (root / RECORDED).read_text()
    corpus = tmp_path / "docs"
    corpus.mkdir()
    make_scanned_pdf(corpus / "scan.pdf")
    # python-docx keeps the text exactly, so the recording (keyed by text) answers it
    import docx

    document = docx.Document()
    for paragraph in text.split("\n\n"):
        document.add_paragraph(paragraph.strip())
    document.save(str(corpus / "returns.docx"))
    code = main(["run", str(corpus), "--out", "out", "--lm", f"replay/{root / 'tests/recordings/strong-model.jsonl'}",
                 "--no-track", "--no-progress"])
    assert code == 0
    accepted = datasets.load_from_disk("out/trajectories")
    rejects = datasets.load_from_disk("out/rejects")
    assert accepted.num_rows == 1 and accepted[0]["source"].endswith("returns.docx")
    assert [(r["outcome"], r["source"].rsplit("/", 1)[-1]) for r in rejects] == [("unreadable", "scan.pdf")]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["segments"] == 2


def test_a_corpus_with_no_readable_text_exits_non_zero(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    make_scanned_pdf(tmp_path / "scan.pdf")
    assert main(["run", "scan.pdf", "--out", "out", "--no-track", "--no-progress"]) == 1
    assert "no readable text in scan.pdf: all 1 item(s) unreadable" in capsys.readouterr().err


def test_a_pdf_corpus_runs_end_to_end_page_by_page(tmp_path, monkeypatch):
    """A two-page PDF (a procedure, then a story) through the whole run, models scripted over HTTP."""
    from tests.fake_openai import FakeOpenAIServer
    from tests.fixtures import handlers
    from tests.scripted import ScriptedEngine, http_responder

    monkeypatch.chdir(tmp_path)
    make_pdf(tmp_path / "policy.pdf", [PROCEDURE, STORY])
    with FakeOpenAIServer(http_responder(ScriptedEngine(handlers()))) as server:
        code = main(["run", "policy.pdf", "--out", "out", "--lm", "hosted_vllm/scripted", "--api-base", server.url,
                     "--num-retries", "0", "--no-track", "--no-progress", "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    accepted = datasets.load_from_disk("out/trajectories")
    rejects = datasets.load_from_disk("out/rejects")
    assert [r["source"] for r in accepted] == ["policy.pdf#page=1"]
    assert [(r["outcome"], r["source"]) for r in rejects] == [("filtered_out", "policy.pdf#page=2")]
