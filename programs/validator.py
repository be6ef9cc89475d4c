"""GEM's rule checks, deterministic and LM-free, each a named rule with a stable code.

Runs on any OpenAI-format record `{"tools": [...], "messages": [...]}`, not only ours:
a tool or message that does not even parse is reported (T001, M001) and the other
checks run on the rest. Grounding (G001) approximates the judge's R1 without an LM and
is a warning: paraphrase and reformatting (a spoken date turned ISO) trip it, so it is
counted and shown, and rejects a trajectory only when the caller asks for that.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import TypeAdapter, ValidationError

from gem_synth.signatures.chat import AssistantMessage, Message, SystemMessage, Tool, ToolMessage, UserMessage, content_text
from gem_synth.signatures.records import Violation


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    description: str
    severity: str = "error"
    rule_set: str = "openai"  # "openai": any OpenAI-format tool-use record; "gem": GEM's own conventions


RULE_SETS = ("openai", "gem")


RULES: dict[str, Rule] = {r.code: r for r in [
    Rule("T001", "tool_malformed", "a tool is not {type: function, function: {name, description, parameters}}"),
    Rule("T002", "tool_name_invalid", "a tool name is not an identifier (letters, digits, _; at most 64)"),
    Rule("T003", "tool_name_duplicate", "two tools share a name"),
    Rule("T004", "tool_schema_invalid", "parameters is not a valid JSON Schema of type object"),
    Rule("T005", "tool_description_missing", "a tool has no description"),
    Rule("T006", "parameter_untyped", "a parameter has no type"),
    Rule("T007", "secret_parameter", "a tool takes a secret (password, PIN, CVV, security answer, card number)", rule_set="gem"),
    Rule("M001", "message_malformed", "a message is not a valid OpenAI chat message"),
    Rule("O001", "first_not_system", "the conversation does not start with a system message", rule_set="gem"),
    Rule("O002", "system_not_first", "a system message appears after the start", rule_set="gem"),
    Rule("O003", "user_after_tool", "a user turn follows a tool result directly", rule_set="gem"),
    Rule("O004", "last_not_assistant_text", "the conversation does not end with an assistant text turn", rule_set="gem"),
    Rule("O005", "no_user_turn", "the conversation has no user turn", rule_set="gem"),
    Rule("O006", "no_tool_call", "the conversation makes no tool call: it is no tool-use trajectory", rule_set="gem"),
    Rule("E001", "empty_message", "a message has no content (an assistant turn has neither text nor calls)"),
    Rule("C001", "unknown_tool", "a call names a tool that is not defined"),
    Rule("C002", "arguments_not_object", "call arguments are not a JSON object string"),
    Rule("C003", "unknown_argument", "a call passes an argument its tool does not define"),
    Rule("C004", "argument_type_mismatch", "an argument value does not match its schema"),
    Rule("C005", "missing_required_argument", "a call omits a required argument"),
    Rule("C006", "call_id_invalid", "a call id is empty or reused"),
    Rule("R001", "call_unanswered", "a tool call has no tool message answering it right after"),
    Rule("R002", "tool_message_unmatched", "a tool message answers no pending call of the turn before"),
    Rule("R003", "call_answered_twice", "a tool call is answered by more than one tool message"),
    Rule("C007", "arguments_not_string", "call arguments are a JSON object, not a JSON-encoded string "
                                          "(normalised to a string for the other checks and for exports)", "warning"),
    Rule("G001", "ungrounded_argument", "an argument value appears nowhere earlier in the conversation", "warning", "gem"),
]}

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# A parameter that makes the user type a secret into the chat (conventions.SECRETS), by its
# snake_case or camelCase words: `password`, `new_pin`, `cvv`, `securityAnswer`, `card_number`.
# A card *number* is a secret only for payment cards: `library_card_number` and `health_card_number` are
# identifiers (the strong-model stand-in designed both, and both must pass).
SECRET_PARAMETER = re.compile(
    r"(?:^|_)(?:password|passwd|passcode|passphrase|pin|pin_code|cvv2?|cvc|security_answer|secret_answer|"
    r"secret)(?:_|$)|^(?:(?:credit|debit|payment|bank)_)?card_number$")


def is_secret_parameter(name: str) -> bool:
    """True for a parameter name that makes the user type a secret (rule T007), snake_case or camelCase."""
    return bool(SECRET_PARAMETER.search(re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", str(name)).lower()))


_TOOL = TypeAdapter(Tool)
_MESSAGE = TypeAdapter(Message)


def violation(code: str, index: int | None, reason: str) -> Violation:
    rule = RULES[code]
    return Violation(code=code, rule=rule.name, message_index=index, reason=reason, severity=rule.severity)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" if where else err["msg"]


def parse_record(record: Any) -> tuple[list[Tool], list[tuple[int, Message]], list[Violation]]:
    """Parse tools and messages one by one, so a single bad item does not hide the rest."""
    found: list[Violation] = []
    if not isinstance(record, dict):
        return [], [], [violation("M001", None, "record is not a JSON object")]
    raw_tools = record.get("tools") or []
    if isinstance(raw_tools, str):  # as TRL reads it and gem-synth's openai export writes it
        try:
            raw_tools = json.loads(raw_tools)
        except json.JSONDecodeError:
            found.append(violation("T001", None, "`tools` is a string that is not JSON"))
            raw_tools = []
    raw_messages = record.get("messages")
    tools: list[Tool] = []
    for i, raw in enumerate(raw_tools if isinstance(raw_tools, list) else []):
        try:
            tools.append(_TOOL.validate_python(raw))
        except ValidationError as exc:
            found.append(violation("T001", None, f"tool {i}: {_first_error(exc)}"))
    if not isinstance(raw_tools, list):
        found.append(violation("T001", None, "`tools` is not a list"))
    messages: list[tuple[int, Message]] = []
    if not isinstance(raw_messages, list) or not raw_messages:
        found.append(violation("M001", None, "`messages` is missing or not a non-empty list"))
        return tools, messages, found
    for i, raw in enumerate(raw_messages):
        raw, objects = string_arguments(raw)
        for name in objects:
            found.append(violation("C007", i, f"`{name}` arguments are a JSON object; OpenAI format has a "
                                              "JSON-encoded string (normalised)"))
        try:
            messages.append((i, _MESSAGE.validate_python(raw)))
        except ValidationError as exc:
            found.append(violation("M001", i, _first_error(exc)))
    return tools, messages, found


def string_arguments(raw: Any) -> tuple[Any, list[str]]:
    """`raw` with tool-call arguments given as JSON objects (as xLAM, Glaive and Arrow round trips store
    them) encoded as JSON strings, and the names of the calls that were; other input is returned as is."""
    if not isinstance(raw, dict) or not isinstance(raw.get("tool_calls"), list):
        return raw, []
    calls, changed = [], []
    for call in raw["tool_calls"]:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("arguments"), (dict, list)):
            changed.append(str(function.get("name")))
            call = {**call, "function": {**function, "arguments": json.dumps(function["arguments"], ensure_ascii=False)}}
        calls.append(call)
    return ({**raw, "tool_calls": calls}, changed) if changed else (raw, [])


def _null_paths(schema: Any, path: str = "") -> Iterator[str]:
    """Where a schema holds JSON null: keys an Arrow/Parquet round trip adds to make rows share one struct."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            where = f"{path}.{key}" if path else str(key)
            if value is None:
                yield where
            else:
                yield from _null_paths(value, where)
    elif isinstance(schema, list):
        for k, value in enumerate(schema):
            yield from _null_paths(value, f"{path}[{k}]")


def check_tools(tools: list[Tool]) -> Iterator[Violation]:
    seen: set[str] = set()
    for tool in tools:
        name = tool.name
        if not IDENTIFIER.match(name):
            yield violation("T002", None, f"`{name}` is not an identifier")
        if name in seen:
            yield violation("T003", None, f"`{name}` is defined more than once")
        seen.add(name)
        if not tool.function.description.strip():
            yield violation("T005", None, f"`{name}` has an empty description")
        params = tool.function.parameters
        problem = _schema_problem(json.dumps(params, sort_keys=True))
        if problem:
            nulls = list(_null_paths(params))
            if nulls:
                problem = (f"{', '.join(nulls[:3])} {'is' if len(nulls) == 1 else 'are'} null: this looks like "
                           "Arrow/Parquet null padding (drop the null keys)")
            yield violation("T004", None, f"`{name}`: {problem}")
            continue
        if params.get("type") != "object":
            yield violation("T004", None, f"`{name}`: parameters must have type object, got {params.get('type')!r}")
            continue
        for pname, pschema in (params.get("properties") or {}).items():
            if is_secret_parameter(pname):
                yield violation("T007", None, f"`{name}.{pname}` takes a secret from the conversation")
            if not isinstance(pschema, dict) or not ({"type", "enum", "const", "anyOf", "oneOf", "$ref"} & set(pschema)):
                yield violation("T006", None, f"`{name}.{pname}` has no type")
        for missing in set(params.get("required") or []) - set(params.get("properties") or {}):
            yield violation("T004", None, f"`{name}`: required `{missing}` is not a property")


def check_order(messages: list[tuple[int, Message]]) -> Iterator[Violation]:
    if not messages:
        return
    first_index, first = messages[0]
    if not isinstance(first, SystemMessage) or first_index != 0:
        yield violation("O001", 0, f"starts with a {first.role} message")
    for (_, prev), (i, msg) in zip(messages, messages[1:]):
        if isinstance(msg, SystemMessage):
            yield violation("O002", i, "system message after the start")
        if isinstance(msg, UserMessage) and isinstance(prev, ToolMessage):
            yield violation("O003", i, "user turn right after a tool result; the assistant must read it first")
    last_index, last = messages[-1]
    if not isinstance(last, AssistantMessage) or not content_text(last.content).strip():
        yield violation("O004", last_index, f"ends with a {last.role} message without assistant text")
    if not any(isinstance(m, UserMessage) for _, m in messages):
        yield violation("O005", None, "no user message")
    if not any(isinstance(m, AssistantMessage) and m.tool_calls for _, m in messages):
        yield violation("O006", None, "no assistant turn calls a tool")


def check_empty(messages: list[tuple[int, Message]]) -> Iterator[Violation]:
    for i, msg in messages:
        text = content_text(msg.content).strip()
        if isinstance(msg, AssistantMessage):
            if not text and not msg.tool_calls:
                yield violation("E001", i, "assistant turn with neither text nor tool calls")
        elif not text:
            yield violation("E001", i, f"empty {msg.role} message")


def check_pairing(messages: list[tuple[int, Message]]) -> Iterator[Violation]:
    """Each call is answered once by the tool messages that directly follow its turn."""
    seen_ids: set[str] = set()
    pending: dict[str, int] = {}  # call id -> index of the assistant message that made it
    answered: set[str] = set()

    def close_pending() -> Iterator[Violation]:
        for call_id, at in pending.items():
            yield violation("R001", at, f"call `{call_id}` is not answered by a tool message")
        pending.clear()

    for i, msg in messages:
        if isinstance(msg, ToolMessage):
            cid = msg.tool_call_id
            if cid in pending:
                del pending[cid]
                answered.add(cid)
            elif cid in answered:
                yield violation("R003", i, f"call `{cid}` was already answered")
            else:
                yield violation("R002", i, f"tool message for `{cid}` answers no pending call")
            continue
        yield from close_pending()
        answered.clear()
        if isinstance(msg, AssistantMessage):
            for call in msg.tool_calls or []:
                if not call.id.strip() or call.id in seen_ids:
                    yield violation("C006", i, f"call id `{call.id}` is empty or reused")
                seen_ids.add(call.id)
                pending[call.id] = i
    yield from close_pending()


def _decode_arguments(arguments: str) -> dict | None:
    try:
        value = json.loads(arguments)
    except (json.JSONDecodeError, TypeError):
        return None
    return value if isinstance(value, dict) else None


def check_calls(tools: list[Tool], messages: list[tuple[int, Message]]) -> Iterator[Violation]:
    by_name = {t.name: t for t in tools}
    for i, msg in messages:
        if not isinstance(msg, AssistantMessage):
            continue
        for call in msg.tool_calls or []:
            name = call.function.name
            tool = by_name.get(name)
            if tool is None:
                yield violation("C001", i, f"`{name}` is not a defined tool")
                continue
            args = _decode_arguments(call.function.arguments)
            if args is None:
                yield violation("C002", i, f"`{name}` arguments {call.function.arguments[:60]!r} are not a JSON object")
                continue
            yield from _check_arguments(i, name, tool.function.parameters, args)


def _check_arguments(i: int, name: str, params: dict, args: dict) -> Iterator[Violation]:
    if _schema_problem(json.dumps(params, sort_keys=True)):
        return  # the tool's schema is broken (T004): its arguments cannot be checked against it
    properties = params.get("properties") or {}
    for key in args:
        if key not in properties and params.get("additionalProperties") is not True:
            yield violation("C003", i, f"`{name}` has no argument `{key}`")
    for key in params.get("required") or []:
        if key not in args:
            yield violation("C005", i, f"`{name}` needs `{key}`")
    for key, value in args.items():
        schema = properties.get(key)
        if not isinstance(schema, dict):
            continue
        try:
            errors = sorted(_validator(json.dumps(schema, sort_keys=True)).iter_errors(value), key=lambda e: e.path)
        except SchemaError:
            continue  # reported by check_tools
        if errors:
            yield violation("C004", i, f"`{name}.{key}` = {json.dumps(value)[:60]}: {errors[0].message[:120]}")


@lru_cache(maxsize=4096)
def _schema_problem(schema_json: str) -> str | None:
    """Why a parameters schema is not valid JSON Schema, or None; checked once per distinct schema."""
    try:
        Draft202012Validator.check_schema(json.loads(schema_json))
    except SchemaError as exc:
        return exc.message
    return None


@lru_cache(maxsize=4096)
def _validator(schema_json: str) -> Draft202012Validator:
    """One compiled validator per distinct parameter schema (they repeat across calls and rows)."""
    return Draft202012Validator(json.loads(schema_json))


_WORD = re.compile(r"[\w@.+-]+", re.UNICODE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


def _numbers(text: str) -> set[float]:
    out = set()
    for token in _NUMBER.findall(text):
        try:
            out.add(float(token.replace(",", "")))
        except ValueError:
            pass
    return out


def leaves(value: Any) -> Iterator[Any]:
    """Every scalar inside a JSON value (nested objects and arrays walked), None included."""
    if isinstance(value, dict):
        for v in value.values():
            yield from leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from leaves(v)
    else:
        yield value


_NUMBER_WORDS = {w: float(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())} | {"dozen": 12.0, "half": 0.5, "once": 1.0, "twice": 2.0}
_MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december"]
_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_DAY_MONTH = re.compile(r"\b(\d{1,2})(?:st|nd|rd|th)?(?: of)? (" + "|".join(m[:3] for m in _MONTHS) + r")[a-z]*\.?\b")
_MONTH_DAY = re.compile(r"\b(" + "|".join(m[:3] for m in _MONTHS) + r")[a-z]*\.? (\d{1,2})(?:st|nd|rd|th)?\b")


_DURATION_WORDS = {"day", "days", "week", "weeks", "weekend", "fortnight", "month", "months"}


def _compact(text: str) -> str:
    """Text with the separators people put inside codes and numbers removed (spaces, -, ., /)."""
    return re.sub(r"[\s\-./]", "", text)


class GroundingContext:
    """What the conversation has said so far, in the forms GEM's grounding rule accepts.

    The rule (signatures/conventions.py, GROUNDING) allows normalisation: a date said in
    words written as ISO 8601 (also a weekday, "today" or "tomorrow" relative to a date in
    the context, or a date a stated duration away from one), a number in words, a code or
    number said in groups ("2900 0417 3312", "DE89 3704 ..."), a phone number said
    nationally written with its country code, a name's words in another order or case
    (also split at hyphens), a value computed from two grounded numbers (sum, difference,
    product, or a share as a percentage).
    """

    def __init__(self) -> None:
        self.text = ""
        self.compact = ""  # the text without spaces, hyphens, dots and slashes: "2900 0417 3312" -> "290004173312"
        self.words: set[str] = set()
        self.numbers: set[float] = set()
        self.dates: set[tuple[int, int]] = set()  # (month, day) said in words
        self.iso_dates: set[str] = set()
        self.relative = False
        self.durations = False  # "two weeks", "next month", "within 10 days": dates computed from dates
        self._derived: set[float] | None = None

    def add(self, text: str) -> None:
        norm = _norm(text)
        self.text += "\n" + norm
        self.compact += "\n" + _compact(norm)
        words = _WORD.findall(norm)
        self.words.update(w.strip(".,;:!?") for w in words)
        self.words.update(part for w in words for part in re.split(r"[-/]", w.strip(".,;:!?")) if part)
        self.numbers |= _numbers(text) | {_NUMBER_WORDS[w] for w in self.words if w in _NUMBER_WORDS}
        self.dates |= {(_MONTHS.index(next(m for m in _MONTHS if m.startswith(mon))) + 1, int(day))
                       for day, mon in _DAY_MONTH.findall(norm)}
        self.dates |= {(_MONTHS.index(next(m for m in _MONTHS if m.startswith(mon))) + 1, int(day))
                       for mon, day in _MONTH_DAY.findall(norm)}
        self.iso_dates |= {"-".join(m) for m in _ISO_DATE.findall(norm)}
        self.relative |= bool(self.words & {"today", "tomorrow", *_WEEKDAYS})
        self.durations |= bool(self.words & _DURATION_WORDS)
        self._derived = None

    def derived(self) -> set[float]:
        """Numbers computed from two grounded numbers: sums, differences, products, percentages."""
        if self._derived is None:
            base = sorted(self.numbers)[:300]
            out = set(base) | {n / 100 for n in base} | {n * 100 for n in base}
            for k, a in enumerate(base):
                for b in base[k:]:
                    out |= {round(a + b, 6), round(abs(a - b), 6), round(a * b, 6)}
            self._derived = out
        return self._derived

    def date_grounded(self, iso: str) -> bool:
        import datetime as dt

        try:
            date = dt.date.fromisoformat(iso)
        except ValueError:
            return False
        if (date.month, date.day) in self.dates:
            return True
        known = set()
        for iso in self.iso_dates:
            try:
                known.add(dt.date.fromisoformat(iso))
            except ValueError:
                continue
        years = {d.year for d in known} or {date.year}
        for month, day in self.dates:  # "20 April" in the year the context is in
            for year in years:
                try:
                    known.add(dt.date(year, month, day))
                except ValueError:
                    pass
        for base in known:
            delta = (date - base).days
            if self.relative and 0 <= delta <= 14 and (delta <= 1 or _WEEKDAYS[date.weekday()] in self.words):
                return True  # "tomorrow", "Friday" relative to a date the context gives
            if self.durations and abs(delta) <= 92:
                return True  # "for two weeks", "next week or the week after": a date plus a number of days
        return False

    def grounds(self, value: Any) -> bool:
        if value is None or isinstance(value, bool):
            return True
        if isinstance(value, (int, float)):
            return float(value) in self.numbers or round(float(value), 6) in self.derived()
        text = _norm(str(value))
        if not text or text in self.text:
            return True
        iso = _ISO_DATE.match(text)
        if iso and self.date_grounded(iso.group(0)) and len(text) <= 25:
            return True
        compact = _compact(text)
        if len(compact) >= 6 and sum(c.isdigit() for c in compact) >= 4:  # a code or number written in groups
            if compact in self.compact:
                return True
            digits = re.sub(r"\D", "", compact)
            if compact.startswith("+") and len(digits) >= 9 and digits[-9:] in re.sub(r"\D", "", self.compact):
                return True  # a phone number said nationally ("0157 ...") written with its country code
        words = [part for w in _WORD.findall(text) for part in re.split(r"[-/]", w.strip(".,;:!?")) if part]
        if not words:
            return False
        present = sum(w in self.words or w in self.text for w in words)
        if len(words) <= 3:
            return present == len(words)  # a name or phrase in another order or case
        # Free text (a note, a reason) is paraphrased, not copied: most of its words must be there.
        return present / len(words) >= 0.6


def check_grounding(tools: list[Tool], messages: list[tuple[int, Message]]) -> Iterator[Violation]:
    """Every argument value is grounded in the system prompt, a user turn or a tool result before it.

    GEM's grounding rule as `GroundingContext` applies it. Enum values are exempt (the
    schema itself offers them), and so are booleans and nulls. A warning, not an error: it
    approximates the judge's R1, which decides.
    """
    by_name = {t.name: t for t in tools}
    context = GroundingContext()
    for i, msg in messages:
        if isinstance(msg, AssistantMessage):
            for call in msg.tool_calls or []:
                tool = by_name.get(call.function.name)
                args = _decode_arguments(call.function.arguments)
                if tool is None or args is None:
                    continue
                if _schema_problem(json.dumps(tool.function.parameters, sort_keys=True)):
                    continue  # a broken schema (T004) cannot say which values it offers
                props = tool.function.parameters.get("properties") or {}
                for key, value in args.items():
                    prop = props.get(key)
                    enum = (prop.get("enum") if isinstance(prop, dict) else None) or []
                    for leaf in leaves(value):
                        if leaf in enum or context.grounds(leaf):
                            continue
                        yield violation("G001", i, f"`{call.function.name}.{key}` = {json.dumps(leaf)[:60]} "
                                                   "appears nowhere earlier")
        else:
            context.add(content_text(msg.content))


def validate(record: Any, grounding: bool = True, rules: str = "gem") -> list[Violation]:
    """All violations of one OpenAI-format record, in the order the checks run.

    rules: "openai" checks what any OpenAI-format tool-use record must satisfy (well-formed
    tools, schemas and messages; calls that match a tool and its schema; every call
    answered exactly once by id); "gem" (the pipeline's) adds GEM's conventions: system
    turn first, no user turn right after a tool result, ends with assistant text, no
    secret parameters, grounding (G001, a warning). Never raises for any JSON value.
    Raises ValueError for an unknown rule set.
    """
    if rules not in RULE_SETS:
        raise ValueError(f"unknown rule set {rules!r}; choose from {', '.join(RULE_SETS)}")
    found = _validate(record, grounding and rules == "gem")
    return found if rules == "gem" else [v for v in found if RULES[v.code].rule_set == "openai"]


def _validate(record: Any, grounding: bool) -> list[Violation]:
    tools, messages, found = parse_record(record)
    found += list(check_tools(tools))
    found += list(check_order(messages))
    found += list(check_empty(messages))
    found += list(check_pairing(messages))
    found += list(check_calls(tools, messages))
    if grounding:
        found += list(check_grounding(tools, messages))
    return found


def errors(violations: list[Violation]) -> list[Violation]:
    return [v for v in violations if v.severity == "error"]
