"""The two output tables, built from the journal as Hugging Face datasets.

`trajectories`: one row per accepted trajectory, OpenAI `messages` plus `tools`, ready
for TRL's SFTTrainer. `rejects`: every other segment with the stage and reason. Every
segment of the corpus is in exactly one of them (exact duplicates are rejects with
outcome `duplicate`).

Explicit features keep the Arrow schema stable: `tools` and `workflows` are JSON
strings, because Arrow unifies struct fields across rows and would give each tool's
parameter schema every other tool's properties as nulls; tool-call arguments are JSON
strings for the same reason.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
from datasets import Features, Value

from gem_synth.running.journal import latest_by_id, read_entries
from gem_synth.signatures.records import SegmentResult

FORMATS = ("arrow", "jsonl", "parquet")

_CALL = {"id": Value("string"), "type": Value("string"),
         "function": {"name": Value("string"), "arguments": Value("string")}}
MESSAGE_FEATURES = {"role": Value("string"), "content": Value("string"), "tool_calls": [_CALL],
                    "tool_call_id": Value("string"), "name": Value("string")}
_VERDICT = {"passed": Value("bool"), "offending_messages": [Value("int32")], "reason": Value("string")}
_COMMON = {
    "id": Value("string"), "source": Value("string"), "position": Value("int32"), "text": Value("string"),
    "model": Value("string"), "program_version": Value("string"), "program_hash": Value("string"),
    "prompt_tokens": Value("int64"), "completion_tokens": Value("int64"), "lm_calls": Value("int32"),
    "seconds": Value("float32"),
}
TRAJECTORY_FEATURES = Features({
    **_COMMON,
    "tools": Value("string"),
    "messages": [MESSAGE_FEATURES],
    "workflows": Value("string"),
    "summary": Value("string"), "domain": Value("string"), "platform": Value("string"),
    "task_category": Value("string"),
    "patterns_claimed": [Value("string")],
    "patterns_verified": [Value("string")],
    "stats": {k: Value("int32") for k in ("messages", "user_turns", "assistant_turns", "tool_calls",
                                         "distinct_tools_used", "tools_defined")},
    "judge": {"tool_call_hallucination": _VERDICT, "capability_hallucination": _VERDICT,
              "context_hallucination": _VERDICT,
              "patterns_exercised": [{"pattern": Value("string"), "message_indices": [Value("int32")],
                                      "evidence": Value("string")}]},
    "warnings": [Value("string")],
})
REJECT_FEATURES = Features({
    **_COMMON,
    "outcome": Value("string"), "stage": Value("string"), "reason": Value("string"),
    "violation_codes": [Value("string")],
    "details": Value("string"),
})


def _message_row(message: dict[str, Any]) -> dict[str, Any]:
    row = {key: message.get(key) for key in MESSAGE_FEATURES}
    if isinstance(row["content"], list):  # text parts
        row["content"] = "".join(part.get("text", "") for part in row["content"])
    return row


def _common(entry: dict[str, Any], segment: dict[str, Any]) -> dict[str, Any]:
    usage = entry.get("usage") or {}
    return {
        "id": entry["id"], "source": segment.get("source", ""), "position": segment.get("position", 0),
        "text": segment.get("text", ""), "model": entry.get("model", ""),
        "program_version": entry.get("program_version", ""), "program_hash": entry.get("program_hash", ""),
        "prompt_tokens": usage.get("prompt_tokens", 0), "completion_tokens": usage.get("completion_tokens", 0),
        "lm_calls": usage.get("lm_calls", 0), "seconds": entry.get("seconds", 0.0),
    }


def trajectory_row(entry: dict[str, Any]) -> dict[str, Any]:
    result = SegmentResult.model_validate(entry["result"])
    record = result.record
    openai = record.trajectory.to_openai()
    return {
        **_common(entry, entry["result"]["segment"]),
        "tools": json.dumps(openai["tools"], ensure_ascii=False),
        "messages": [_message_row(m) for m in openai["messages"]],
        "workflows": json.dumps([w.model_dump() for w in record.workflows], ensure_ascii=False),
        "summary": record.labels.summary, "domain": record.labels.domain, "platform": record.labels.platform,
        "task_category": record.labels.task_category,
        "patterns_claimed": list(record.patterns_claimed),
        "patterns_verified": list(record.patterns_verified),
        "stats": record.stats.model_dump(),
        "judge": record.judge.model_dump() if record.judge else None,
        "warnings": [w.line() for w in record.warnings],
    }


def reject_row(entry: dict[str, Any]) -> dict[str, Any]:
    result = entry.get("result")
    segment = result["segment"] if result else entry.get("segment", {})
    details = {k: v for k, v in (result or {}).items() if k not in ("segment", "outcome", "stage", "reason")}
    return {
        **_common(entry, segment),
        "outcome": entry["outcome"], "stage": entry.get("stage", ""), "reason": entry.get("reason", ""),
        "violation_codes": sorted({v["code"] for v in (result or {}).get("violations", [])}),
        "details": json.dumps(details, ensure_ascii=False),
    }


def final_entries(journal: Path) -> Iterator[dict[str, Any]]:
    """The latest entry of each segment, in journal order."""
    latest = latest_by_id(journal)
    for number, entry in enumerate(read_entries(journal)):
        if latest.get(entry["id"]) == number:
            yield entry


def _write(gen, features: Features, path: Path, fmt: str, scratch: Path) -> int:
    if next(gen(), None) is None:  # from_generator refuses an empty generator
        ds = datasets.Dataset.from_dict({name: [] for name in features}, features=features)
    else:
        ds = datasets.Dataset.from_generator(gen, features=features, cache_dir=str(scratch))
    if fmt == "arrow":
        if path.exists():
            shutil.rmtree(path)
        # An empty table still gets one shard: datasets cannot load a saved dataset without any.
        ds.save_to_disk(str(path), num_shards=1 if len(ds) == 0 else None)
    elif fmt == "jsonl":
        ds.to_json(str(path.with_suffix(".jsonl")), lines=True, force_ascii=False)
    else:
        ds.to_parquet(str(path.with_suffix(".parquet")))
    return len(ds)


def write_tables(journal: Path, out: Path, fmt: str = "arrow") -> dict[str, int]:
    """Write `trajectories` and `rejects` under `out`; return their row counts."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    scratch = out / ".build"
    datasets.disable_progress_bars()

    def accepted():
        for entry in final_entries(journal):
            if entry["outcome"] == "accepted":
                yield trajectory_row(entry)

    def rejected():
        for entry in final_entries(journal):
            if entry["outcome"] != "accepted":
                yield reject_row(entry)

    try:
        counts = {
            "trajectories": _write(accepted, TRAJECTORY_FEATURES, out / "trajectories", fmt, scratch),
            "rejects": _write(rejected, REJECT_FEATURES, out / "rejects", fmt, scratch),
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return counts


def save_rows(rows: list[dict[str, Any]], path: Path, columns: tuple[str, ...] = ("id",)) -> None:
    """Rows as a Hugging Face dataset folder (e.g. the synthesizer's SFT chats). With no rows, an
    empty dataset with `columns` is written (datasets cannot infer a schema from nothing)."""
    if path.exists():
        shutil.rmtree(path)
    ds = datasets.Dataset.from_list(rows) if rows else datasets.Dataset.from_dict({c: [] for c in columns})
    ds.save_to_disk(str(path), num_shards=1)


class UnreadableInput(ValueError):
    """A JSON/JSONL file that cannot be read at all; the message is one line naming it."""


class NotJSON(str):
    """A JSONL line that does not parse: a finding of its own (validate) or a record left out (export)."""


def json_records(path: Path, empty_ok: bool = False) -> Iterator[tuple[str, Any]]:
    """(label, record) pairs from a JSON object ("record"), a JSON list ("record i") or JSONL ("line N").

    A JSONL line that is not JSON comes as a NotJSON value with the reason, and the rest is
    still read. Raises UnreadableInput for a missing, non-UTF-8 or (unless `empty_ok`) empty file.
    """
    if not path.is_file():
        raise UnreadableInput(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableInput(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    if not text.strip():
        if empty_ok:
            return
        raise UnreadableInput(f"{path}: empty file")
    if path.suffix.lower() != ".jsonl" and text.lstrip()[0] in "[{":
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None  # perhaps JSONL after all
        if data is not None:
            items = data if isinstance(data, list) else [data]
            for i, item in enumerate(items):
                yield (f"record {i}" if isinstance(data, list) else "record"), item
            return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield f"line {number}", json.loads(line)
        except json.JSONDecodeError as exc:
            yield f"line {number}", NotJSON(f"not JSON ({exc.msg} at column {exc.colno})")


def read_records(ref: str | Path, split: str = "train") -> Iterator[dict[str, Any]]:
    """OpenAI-format records ({tools, messages, ...}) from whatever holds them, lazily.

    `ref` is a `gem-synth run` folder (its trajectories table in any format it writes:
    Arrow, JSONL or Parquet), a saved Hugging Face dataset, a JSON file (an object or a
    list), a JSONL file, a Parquet file, or a dataset name on the Hub (`split`). Raises
    FileNotFoundError / ValueError with a one-line message when `ref` holds none of these.
    A JSONL line that is not JSON is yielded as {"__unreadable__": reason, "id": "line N"}
    (`json_records`, which `gem-synth validate` reads with too).
    """
    path = Path(ref)
    if path.is_dir():
        for name in ("trajectories", "trajectories.jsonl", "trajectories.parquet"):
            if (path / name).exists():
                yield from read_records(path / name, split)
                return
        try:
            ds = datasets.load_from_disk(str(path))
        except Exception as exc:
            raise ValueError(f"{ref}: neither a gem-synth run folder nor a saved dataset ({type(exc).__name__})") from exc
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise ValueError(f"{ref}: no split {split!r}; it has {', '.join(ds)}")
            ds = ds[split]
        yield from ds
        return
    suffix = path.suffix.lower()
    if path.is_file() and suffix == ".parquet":
        yield from datasets.Dataset.from_parquet(str(path))
        return
    if path.is_file() and suffix in (".json", ".jsonl", ".ndjson"):
        for label, value in json_records(path, empty_ok=True):
            yield {"__unreadable__": str(value), "id": label} if isinstance(value, NotJSON) else value
        return
    if path.exists():
        raise ValueError(f"{ref}: unknown format {suffix or '(no extension)'}; expected a run folder, a saved "
                         "dataset, .json, .jsonl or .parquet")
    if "/" in str(ref) and not str(ref).startswith((".", "/")):  # a Hub dataset name
        try:
            yield from datasets.load_dataset(str(ref), split=split, streaming=True)
        except Exception as exc:
            raise ValueError(f"{ref}: cannot load dataset ({type(exc).__name__}: {str(exc).splitlines()[0]})") from exc
        return
    raise FileNotFoundError(f"{ref}: no such file or folder")
