"""Recorded model answers, replayed through a DSPy engine: real model behaviour, offline and free.

A recording is a JSONL file: a first line `{"meta": {...}}` saying which model answered
(for the committed fixtures, a strong-model stand-in: capable models answering through
the relay in `../shared/tools/relay/`, never presented as a named provider model), then
one line per answered stage call:

    {"stage": "generate", "signature": "TrajectoryGeneration", "key": "<hex>",
     "inputs": {...a short digest...}, "answer": "<the model's reply text>",
     "usage": {"prompt_tokens": N, "completion_tokens": M}}

Requests are matched by *stage and input*, not by prompt text, so a reworded instruction
or demos added by an optimizer still replay: the stage is identified by the signature's
output field names (DSPy lists them in every system prompt), the input by the segment
text it works on. The judge, whose input is a conversation rather than a text, is
matched by its tool names and then by the closest conversation.

When an output type changes so that a recorded answer no longer fits, the engine raises
`RecordingMismatch` naming the stage and the field, instead of letting the pipeline
count a parse error: a stale recording must be recorded again (README, "Recorded answers").
Use it as a model: `--lm replay/PATH` on the command line, or `replay_lm(PATH)`.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import dspy
from dspy.lm15 import Message, Response, TextPart, Usage, response_to_events
from pydantic import TypeAdapter, ValidationError

from gem_synth import signatures

PREFIX = "replay/"
SIGNATURES: dict[str, type[dspy.Signature]] = {name: getattr(signatures, name) for name in signatures.__all__}
STAGE_OF = {"RelevanceFilter": "filter", "WorkflowExtraction": "extract", "TrajectoryGeneration": "generate",
            "ToolExtension": "extend", "ComplexityRefinement": "refine", "HallucinationJudge": "judge",
            "TrajectorySynthesis": "synthesize"}
_SECTION = re.compile(r"\[\[ ## (\w+) ## \]\]\n(.*?)(?=\n\n\[\[ ## |\n\nRespond with|\Z)", re.S)
_WORDS = re.compile(r"\w+")


class RecordingError(Exception):
    """A recording file that cannot be read; the message is one line for the user."""


class RecordingMismatch(AssertionError):
    """A request the recording cannot answer as the current program expects.

    Raised loudly (it is not an LM error the pipeline would turn into an outcome): either
    no answer was recorded for this stage and input, or the recorded answer no longer fits
    the stage's output type. Either way the recording must be made again.
    """


def signature_of(system: str) -> tuple[str, type[dspy.Signature]] | None:
    """The gem-synth signature (its name and class) a DSPy system prompt belongs to, by its output field names."""
    listed = system.split("Your output fields are:", 1)[-1].split("All interactions", 1)[0]
    names = set(re.findall(r"^\d+\. `(\w+)`", listed, re.M))
    for name, sig in SIGNATURES.items():
        if set(sig.output_fields) == names:
            return name, sig
    return None


def request_inputs(user: str) -> dict[str, str]:
    """The input fields of one DSPy call, from its `[[ ## name ## ]]` sections."""
    return {m.group(1): m.group(2).strip() for m in _SECTION.finditer(user)}


def text_key(text: str) -> str:
    """A stable key for a segment text: whitespace-insensitive SHA-256, 16 hex digits."""
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()[:16]


def judge_key(tools_json: str) -> str:
    """The judge's key: the sorted tool names of its `tools` input."""
    try:
        tools = json.loads(tools_json)
        names = sorted(str((t.get("function") or {}).get("name")) for t in tools if isinstance(t, dict))
    except (json.JSONDecodeError, TypeError, AttributeError):
        names = []
    return "tools:" + ",".join(names)


def call_key(signature: type[dspy.Signature], inputs: dict[str, str]) -> str:
    if "text" in signature.input_fields:
        return text_key(inputs.get("text", ""))
    return judge_key(inputs.get("tools", "[]"))


def _words(text: str) -> set[str]:
    return set(_WORDS.findall(text.casefold()))


def answer_problem(signature: type[dspy.Signature], answer: str) -> str | None:
    """Why a recorded answer does not fit `signature`'s output fields now, naming the field; None if it fits."""
    try:
        value = json.loads(answer)
    except json.JSONDecodeError:
        import json_repair

        value = json_repair.loads(answer)
    if not isinstance(value, dict):
        return "the answer is not a JSON object"
    for name, field in signature.output_fields.items():
        if name not in value:
            return f"field `{name}` is missing from the recorded answer"
        try:
            TypeAdapter(field.annotation).validate_python(value[name])
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            return f"field `{name}`{'.' + where if where else ''}: {first.get('msg')}"
    return None


class Recording:
    """The answers of one recording file, indexed by (signature name, key)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise RecordingError(f"recording {self.path} does not exist")
        self.meta: dict[str, Any] = {}
        self.entries: dict[tuple[str, str], list[dict[str, Any]]] = {}
        with self.path.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise RecordingError(f"{self.path}:{n}: not JSON ({exc.msg})") from exc
                if "meta" in row:
                    self.meta = row["meta"]
                    continue
                if row.get("signature") not in SIGNATURES or not {"key", "answer"} <= set(row):
                    raise RecordingError(f"{self.path}:{n}: not a recorded answer (signature, key, answer)")
                self.entries.setdefault((row["signature"], row["key"]), []).append(row)
        if not self.entries:
            raise RecordingError(f"recording {self.path} holds no answers")

    def __len__(self) -> int:
        return sum(len(v) for v in self.entries.values())

    def rows(self) -> list[dict[str, Any]]:
        return [row for rows in self.entries.values() for row in rows]

    def lookup(self, name: str, signature: type[dspy.Signature], inputs: dict[str, str]) -> dict[str, Any]:
        """The recorded answer for a call of the signature `name`; RecordingMismatch if there is none."""
        candidates = self.entries.get((name, call_key(signature, inputs)), [])
        if not candidates:
            what = f"text {inputs.get('text', '')[:60]!r}" if "text" in inputs else judge_key(inputs.get("tools", "[]"))
            raise RecordingMismatch(f"{self.path.name} has no {STAGE_OF.get(name, name)} answer for {what}; "
                                    "record the fixtures again")
        if len(candidates) == 1:
            return candidates[0]
        seen = _words(inputs.get("conversation", ""))  # several judged conversations with one tool set
        return max(candidates, key=lambda row: len(seen & _words(row.get("inputs", {}).get("conversation", ""))))


class ReplayEngine:
    """A DSPy 3.4 engine that answers from a `Recording` (see the module docstring).

    Counts calls per stage in `calls`. Usage is the recorded usage, so token accounting
    on a replayed run reads like the recorded one.
    """

    supports_response_schema = True
    supported_params = ("temperature", "max_tokens", "response_format")

    def __init__(self, recording: Recording | str | Path):
        self.recording = recording if isinstance(recording, Recording) else Recording(recording)
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def answer(self, system: str, user: str) -> dict[str, Any]:
        found = signature_of(system)
        if found is None:
            raise RecordingMismatch("a request for no gem-synth stage (an optimizer's own program?) "
                                    "cannot be replayed")
        name, signature = found
        row = self.recording.lookup(name, signature, request_inputs(user))
        problem = answer_problem(signature, row["answer"])
        if problem:
            raise RecordingMismatch(f"the recorded {STAGE_OF[name]} answer no longer fits {name}: {problem}; "
                                    "record the fixtures again")
        with self._lock:
            self.calls[STAGE_OF[name]] += 1
        return row

    def complete(self, request) -> Response:
        system = request.system if isinstance(request.system, str) else "".join(p.text for p in request.system or ())
        user = request.messages[-1].text or ""
        row = self.answer(system, user)
        usage = row.get("usage") or {}
        return Response(id=None, model=PREFIX + self.recording.path.name,
                        message=Message.assistant([TextPart(row["answer"])]), finish_reason="stop",
                        usage=Usage(input_tokens=int(usage.get("prompt_tokens", 0)),
                                    output_tokens=int(usage.get("completion_tokens", 0))))

    def stream(self, request):
        return response_to_events(self.complete(request))

    def close(self):
        pass

    def dump_state(self) -> dict[str, Any]:
        return {"recording": str(self.recording.path)}

    def load_state(self, state: dict[str, Any]) -> None:
        self.__init__(state["recording"])


def replay_lm(path: str | Path, **kwargs) -> dspy.LM:
    """A DSPy LM that answers from the recording at `path` (never cached: a recording is already free)."""
    engine = ReplayEngine(path)
    return dspy.LM(PREFIX + engine.recording.path.name, engine=engine, cache=False, num_retries=0, **kwargs)


def recording_rows_from_relay(queue: str | Path) -> list[dict[str, Any]]:
    """Recorded answers from a relay queue folder (`req-N.json` + `resp-N.txt`, see ../shared/tools/relay).

    Requests that belong to no gem-synth stage (the model pre-flight) are skipped. When a
    stage was asked twice for one input (a re-ask after an unparseable answer), the later
    answer is kept. Rows come in request order.
    """
    queue = Path(queue)
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for req_path in sorted(queue.glob("req-*.json"), key=lambda p: int(p.stem.split("-")[1])):
        resp_path = queue / f"resp-{req_path.stem.split('-')[1]}.txt"
        if not resp_path.exists():
            continue
        req = json.loads(req_path.read_text(encoding="utf-8"))
        messages = req.get("messages") or []
        system = next((m.get("content") or "" for m in messages if m.get("role") == "system"), "")
        found = signature_of(system)
        if found is None:
            continue
        name, signature = found
        inputs = request_inputs(str(messages[-1].get("content") or ""))
        answer = resp_path.read_text(encoding="utf-8").strip()
        key = call_key(signature, inputs)
        digest = {"text": inputs.get("text", "")[:80]} if "text" in inputs else {"conversation": inputs.get("conversation", "")}
        prompt_chars = sum(len(str(m.get("content") or "")) for m in messages)
        row = {"stage": STAGE_OF[name], "signature": name, "key": key,
               "inputs": digest, "answer": answer,
               "usage": {"prompt_tokens": prompt_chars // 4, "completion_tokens": len(answer) // 4},
               "request": int(req_path.stem.split("-")[1])}
        ident = (name, key, inputs.get("conversation", "")[:2000])
        rows.pop(ident, None)
        rows[ident] = row
    return list(rows.values())
