"""Reading a corpus lazily and cutting it into paragraph-aligned segments.

A corpus is a text/Markdown/HTML file, a folder of them (recursively), a JSONL file, or
a Hugging Face dataset (saved on disk, or by name). `read_corpus` yields `Segment`s and,
for a file or line that cannot be read inside a larger corpus, `Unreadable` items that
the run records as rejects: one bad file does not stop a run. Problems with the corpus
as a whole (missing path, empty or binary file, unknown format) raise `CorpusError`
with a one-line message. Nothing is held in memory beyond the current document.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from gem_synth.signatures.records import Segment

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst", ".text"}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
DOCUMENT_SUFFIXES = {".pdf", ".docx"}
_BLOCK_TAGS = ["p", "div", "section", "article", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "pre",
               "blockquote", "table", "tr", "dd", "dt", "br", "hr", "main", "header", "footer"]
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class CorpusError(Exception):
    """The corpus as a whole cannot be read; the message is one line naming the file."""


@dataclass(frozen=True)
class Unreadable:
    """A file or record inside the corpus that could not be read, and why."""

    source: str
    reason: str

    @property
    def id(self) -> str:
        return "unreadable-" + hashlib.sha256(self.source.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CorpusOptions:
    segment_words: int = 500
    text_field: str = "text"
    text_column: str = "text"
    split: str = "train"


def segment_id(source: str, position: int, text: str) -> str:
    """Stable across runs: the same text at the same place gets the same id."""
    return hashlib.sha256(f"{source}\x00{position}\x00{text}".encode()).hexdigest()[:16]


def content_key(text: str) -> str:
    """Identity of a segment's text for exact-duplicate detection (whitespace-insensitive)."""
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()[:16]


def split_paragraphs(text: str) -> list[str]:
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]


def segment_text(text: str, target_words: int) -> list[str]:
    """Group paragraphs into segments of about `target_words` words, never splitting a
    paragraph unless it alone exceeds twice the target (then it is cut at sentence ends)."""
    pieces: list[str] = []
    for para in split_paragraphs(text):
        if len(para.split()) <= 2 * target_words:
            pieces.append(para)
            continue
        chunk: list[str] = []
        for sentence in _SENTENCE_END.split(para):
            if chunk and len(" ".join(chunk + [sentence]).split()) > target_words:
                pieces.append(" ".join(chunk))
                chunk = []
            chunk.append(sentence)
        if chunk:
            pieces.append(" ".join(chunk))
    segments: list[str] = []
    current: list[str] = []
    words = 0
    for piece in pieces:
        n = len(piece.split())
        if current and words + n > target_words:
            segments.append("\n\n".join(current))
            current, words = [], 0
        current.append(piece)
        words += n
    if current:
        segments.append("\n\n".join(current))
    return segments


def html_to_text(html: str) -> str:
    """Visible text with block elements as paragraphs; scripts, styles and markup dropped."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "noscript", "template", "head", "svg", "iframe"]):
        tag.decompose()
    for tag in soup.find_all(_BLOCK_TAGS):
        tag.insert_before("\n\n")
        tag.insert_after("\n\n")
    return soup.get_text()


def _read_text_file(path: Path) -> str:
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        raise CorpusError(f"{path}: binary file, not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    if path.suffix.lower() in HTML_SUFFIXES or looks_like_html(text):
        text = html_to_text(text)
    if not text.strip():
        raise CorpusError(f"{path}: empty file")
    return text


_HTML_START = re.compile(r"\s*(<!--.*?-->\s*)*<(!doctype\s+html|html[\s>])", re.I | re.S)


def looks_like_html(text: str) -> bool:
    """An HTML document whatever its name says (help-centre exports saved as .md or .txt): a model
    shown it raw reads markup, styles and scripts (one of the recording's answerers got exactly that)."""
    return bool(_HTML_START.match(text[:2000]))


def _documents_from_file(path: Path, opts: CorpusOptions) -> Iterator[tuple[str, str] | Unreadable]:
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        yield from _documents_from_jsonl(path, opts.text_field)
    elif suffix in TEXT_SUFFIXES | HTML_SUFFIXES:
        yield str(path), _read_text_file(path)
    elif suffix == ".pdf":
        yield from _documents_from_pdf(path)
    elif suffix == ".docx":
        yield from _documents_from_docx(path)
    else:
        known = sorted(TEXT_SUFFIXES | HTML_SUFFIXES | JSONL_SUFFIXES | DOCUMENT_SUFFIXES)
        raise CorpusError(f"{path}: unknown format {suffix or '(no extension)'}; expected one of {' '.join(known)}")


def _documents_from_pdf(path: Path) -> Iterator[tuple[str, str] | Unreadable]:
    """One document per page with text, sourced `file.pdf#page=N` (pypdf: maintained, pure Python).

    An encrypted PDF (without an empty user password), one that does not parse, or one with
    no text layer at all (a scan: OCR it first) is a single Unreadable with the reason.
    """
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted and not reader.decrypt(""):
            yield Unreadable(str(path), "encrypted PDF: it needs a password")
            return
        pages = [(n, page.extract_text() or "") for n, page in enumerate(reader.pages, start=1)]
    except (PdfReadError, ValueError, KeyError, OSError, TypeError) as exc:
        yield Unreadable(str(path), f"not a readable PDF ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})")
        return
    except Exception as exc:  # pypdf raises many kinds for a damaged file; the run goes on
        yield Unreadable(str(path), f"not a readable PDF ({type(exc).__name__})")
        return
    texts = [(n, text) for n, text in pages if text.strip()]
    if not texts:
        yield Unreadable(str(path), f"PDF has no text layer ({len(pages)} page(s)): a scan? run OCR first")
        return
    for n, text in texts:
        yield f"{path}#page={n}", text


def _documents_from_docx(path: Path) -> Iterator[tuple[str, str] | Unreadable]:
    """One document per section (a heading and what follows it), sourced `file.docx#section=Heading`,
    with tables' cells in reading order (python-docx)."""
    try:
        import docx
        from docx.table import Table

        document = docx.Document(str(path))
    except Exception as exc:  # not a zip, an encrypted (OLE) file, a damaged package
        yield Unreadable(str(path), f"not a readable DOCX ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})")
        return
    sections: list[tuple[str, list[str]]] = [("", [])]
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            rows = [" | ".join(cell.text.strip() for cell in row.cells) for row in block.rows]
            sections[-1][1].append("\n".join(rows))
            continue
        text = block.text.strip()
        style = (block.style.name if block.style is not None else "") or ""
        if text and style.lower().startswith(("heading", "title")):
            sections.append((text, [text]))
        elif text:
            sections[-1][1].append(text)
    found = False
    for title, paragraphs in sections:
        if paragraphs:
            found = True
            yield (f"{path}#section={title}" if title else str(path)), "\n\n".join(paragraphs)
    if not found:
        yield Unreadable(str(path), "DOCX has no text")


def _documents_from_jsonl(path: Path, field: str) -> Iterator[tuple[str, str] | Unreadable]:
    if path.stat().st_size == 0:
        raise CorpusError(f"{path}: empty file")
    seen_field = False
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            where = f"{path}:{number}"
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                yield Unreadable(where, "line is not UTF-8")
                continue
            except json.JSONDecodeError as exc:
                yield Unreadable(where, f"line is not JSON ({exc.msg})")
                continue
            if isinstance(record, dict) and not seen_field:
                if field not in record:  # the first record decides: a wrong --text-field is the corpus's problem
                    fields = ", ".join(sorted(map(str, record))[:12]) or "none"
                    raise CorpusError(f"{path}: the first record has no field `{field}` (its fields: {fields}); "
                                      "name the text field with --text-field")
                seen_field = True
            text = record.get(field) if isinstance(record, dict) else None
            if not isinstance(text, str) or not text.strip():
                yield Unreadable(where, f"no text in field `{field}`")
                continue
            yield where, text


def _documents_from_folder(folder: Path, opts: CorpusOptions) -> Iterator[tuple[str, str] | Unreadable]:
    found = False
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        found = True
        try:
            yield from _documents_from_file(path, opts)
        except CorpusError as exc:
            yield Unreadable(str(path), str(exc).removeprefix(f"{path}: "))
    if not found:
        raise CorpusError(f"{folder}: folder has no files")


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()


def _documents_from_dataset(ref: str, opts: CorpusOptions, on_disk: bool) -> Iterator[tuple[str, str] | Unreadable]:
    import datasets

    try:
        if on_disk:
            ds = datasets.load_from_disk(ref)
            if isinstance(ds, datasets.DatasetDict):
                if opts.split not in ds:
                    raise CorpusError(f"{ref}: no split {opts.split!r}; it has {', '.join(ds)}")
                ds = ds[opts.split]
        else:
            ds = datasets.load_dataset(ref, split=opts.split, streaming=True)
    except CorpusError:
        raise
    except Exception as exc:  # datasets raises many kinds; the user needs one line
        raise CorpusError(f"{ref}: cannot load dataset ({type(exc).__name__}: {str(exc).splitlines()[0]})") from exc
    columns = ds.column_names or []
    if columns and opts.text_column not in columns:
        raise CorpusError(f"{ref}: no column {opts.text_column!r}; columns are {', '.join(columns)}")
    for index, row in enumerate(ds):
        text = row.get(opts.text_column)
        where = f"{ref}[{opts.split}][{index}]"
        if isinstance(text, str) and text.strip():
            yield where, text
        else:
            yield Unreadable(where, f"no text in column `{opts.text_column}`")


def documents(ref: str, opts: CorpusOptions) -> Iterator[tuple[str, str] | Unreadable]:
    """(source, text) per document, lazily, or Unreadable for an item inside a corpus."""
    path = Path(ref)
    if path.is_dir():
        if _is_saved_dataset(path):
            return _documents_from_dataset(ref, opts, on_disk=True)
        return _documents_from_folder(path, opts)
    if path.is_file():
        return _documents_from_file(path, opts)
    if re.fullmatch(r"[\w.-]+/[\w.-]+", ref) and not ref.startswith("."):
        return _documents_from_dataset(ref, opts, on_disk=False)
    raise CorpusError(f"{ref}: no such file or folder")


def read_corpus(ref: str, opts: CorpusOptions = CorpusOptions()) -> Iterator[Segment | Unreadable]:
    """Segments of every document in order, with positions counted per document."""
    for doc in documents(ref, opts):
        if isinstance(doc, Unreadable):
            yield doc
            continue
        source, text = doc
        for position, seg in enumerate(segment_text(text, opts.segment_words)):
            yield Segment(id=segment_id(source, position, seg), source=source, position=position, text=seg)


def sample(items: Iterable, k: int, seed: int = 0) -> list:
    """A uniform sample of k items in one pass (reservoir sampling), in corpus order."""
    rng = random.Random(seed)
    reservoir: list[tuple[int, object]] = []
    for i, item in enumerate(items):
        if i < k:
            reservoir.append((i, item))
        else:
            j = rng.randint(0, i)
            if j < k:
                reservoir[j] = (i, item)
    return [item for _, item in sorted(reservoir, key=lambda pair: pair[0])]


LABEL_FIELDS = ("is_procedural", "task_category", "domain")


def _labels(record: dict, where: str) -> dict:
    """The optional labels of one example, strictly typed: CorpusError names the line, the field and the value.

    `is_procedural` must be a JSON boolean (a string such as "false", as CSV conversions
    write, would be truthy); `task_category` one of `signatures.records.TaskCategory`;
    `domain` a string.
    """
    from typing import get_args

    from gem_synth.signatures.records import TaskCategory

    labels = {k: record[k] for k in LABEL_FIELDS if k in record and record[k] is not None}
    if "is_procedural" in labels and not isinstance(labels["is_procedural"], bool):
        raise CorpusError(f"{where}: `is_procedural` must be true or false (a JSON boolean), "
                          f"got {json.dumps(labels['is_procedural'])}")
    categories = get_args(TaskCategory)
    if "task_category" in labels and labels["task_category"] not in categories:
        raise CorpusError(f"{where}: unknown `task_category` {json.dumps(labels['task_category'])}; "
                          f"choose from {', '.join(categories)}")
    if "domain" in labels and not isinstance(labels["domain"], str):
        raise CorpusError(f"{where}: `domain` must be a string, got {json.dumps(labels['domain'])}")
    return labels


def load_examples(ref: str, opts: CorpusOptions = CorpusOptions(), limit: int | None = None) -> list:
    """Train/dev examples for optimizers: one per JSONL line (with optional labels
    `is_procedural`, `task_category`, `domain`), or one per segment of any other corpus."""
    import dspy

    path = Path(ref)
    examples = []
    if path.is_file() and path.suffix.lower() in JSONL_SUFFIXES:
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise CorpusError(f"{path}:{number}: not JSON ({exc.msg})") from exc
                text = record.get(opts.text_field) if isinstance(record, dict) else None
                if not isinstance(text, str) or not text.strip():
                    raise CorpusError(f"{path}:{number}: no text in field `{opts.text_field}`")
                labels = _labels(record, f"{path}:{number}")
                source = f"{path}:{number}"
                examples.append(dspy.Example(text=text, segment_id=segment_id(source, 0, text), source=source,
                                             **labels).with_inputs("text", "segment_id", "source"))
    else:
        for item in read_corpus(ref, opts):
            if isinstance(item, Segment):
                examples.append(dspy.Example(text=item.text, segment_id=item.id, source=item.source)
                                .with_inputs("text", "segment_id", "source"))
    if not examples:
        raise CorpusError(f"{ref}: no examples")
    return examples[:limit] if limit else examples
