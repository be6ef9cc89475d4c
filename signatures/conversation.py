"""The shape a model writes a conversation in: rounds, with ids, roles and pairing left to the program.

A model asked for OpenAI messages can write things no decoding constraint catches: a call
id that matches no result, a tool turn after a user turn, a result for a call never made,
a conversation that ends on a tool result. Here it writes only what carries meaning:

    {"system": "...",
     "rounds": [{"user": "...",
                 "steps": [{"call": {"name": "get_claim", "arguments": {"claim_id": "C-1"}},
                            "result": "{\\"status\\": \\"open\\"}"},
                           {"say": "..."}],
                 "reply": "..."}]}

and `Conversation.to_messages()` makes the canonical OpenAI messages: one system message,
then per round a user message, for each call an assistant message with that one call (id
`call_N`, numbered through the conversation) answered at once by its tool message, and
the assistant's reply last. A text step rides on the message of the call after it
(OpenAI's `content` beside `tool_calls`), or opens the reply when no call follows, so two
assistant messages never follow each other: chat templates that demand strict
alternation (Mistral's) and ShareGPT readers take every trajectory. Ordering, pairing and
ids are right by construction (rules O001-O005, R001-R003 and C006 of the validator
cannot fail on it).

`conversation_over(tools)` narrows the shape to one tool set: each call is one of the
tools, `name` a constant and `arguments` exactly that tool's parameters (an `anyOf` of one
object per tool in JSON Schema). Sent as `response_format`, a constrained decoder can then
write no unknown tool (C001), no argument of another tool (C003), no value of the wrong
type (C004) and no call without its required arguments (C005).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from gem_synth.signatures.chat import (
    AssistantMessage,
    FunctionCall,
    Message,
    SystemMessage,
    ToolCall,
    ToolMessage,
    UserMessage,
    content_text,
)
from gem_synth.signatures.drafts import IDENTIFIER_PATTERN, ToolParameter, ToolSpec

_CALL_NAME = "Exactly the name of one tool in the tool set."
_ARGUMENTS = ("The arguments as a JSON object (not a string): the tool's parameter names with values of "
              "their declared types; required parameters always present.")
_RESULT = ("What the tool returns, as JSON text in a string: its data (an object with the fields the real "
           "system would return) or an error object with an `error` message.")
_SAY = ("Text the assistant says before its next call (what it is about to do, what it found); "
        "most rounds need none.")
_USER = "What the user says, in their own words."
_STEPS = ("What the assistant does before it replies, in order: each step is one tool call with the "
          "result the tool returns, or a short text to the user. Empty when it answers at once.")
_REPLY = "The assistant's text reply that ends the round: an answer, a question or a request to confirm."
_SYSTEM = "The system prompt: the assistant's role, the current date and the domain rules."
_ROUNDS = "The conversation's rounds in order; each starts with the user and ends with the assistant's reply."


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("blank text: every message says something (rule E001)")
    return text


# Text of a message: at least one character that is not whitespace, checked on parse (a JSON Schema
# pattern would cost llama.cpp's grammar its length bound), so a blank message does not parse (E001).
Text = Annotated[str, AfterValidator(_not_blank)]


class CallDraft(BaseModel):
    """One tool call as a model writes it: no id (the program numbers calls), arguments as an object."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description=_CALL_NAME, pattern=IDENTIFIER_PATTERN)
    arguments: dict[str, Any] = Field(default_factory=dict, description=_ARGUMENTS)

    def argument_object(self) -> dict[str, Any]:
        """The arguments as a plain dict, optional parameters left unset (strict decoding writes them as null) omitted."""
        if isinstance(self.arguments, BaseModel):
            return self.arguments.model_dump(mode="json", by_alias=True, exclude_none=True)
        return dict(self.arguments)


class ToolStep(BaseModel):
    """The assistant calls one tool and the tool answers."""

    model_config = ConfigDict(extra="forbid")

    call: CallDraft
    result: Text = Field(description=_RESULT)


class TextStep(BaseModel):
    """The assistant says something before its next call."""

    model_config = ConfigDict(extra="forbid")

    say: Text = Field(min_length=1, description=_SAY)


class Round(BaseModel):
    """One user turn and everything the assistant does until it hands the turn back."""

    model_config = ConfigDict(extra="forbid")

    user: Text = Field(min_length=1, description=_USER)
    steps: list[Union[ToolStep, TextStep]] = Field(default_factory=list, description=_STEPS)
    reply: Text = Field(min_length=1, description=_REPLY)


class Conversation(BaseModel):
    """A whole conversation in rounds; `to_messages()` gives the OpenAI messages."""

    model_config = ConfigDict(extra="forbid")

    system: Text = Field(min_length=1, description=_SYSTEM)
    rounds: list[Round] = Field(min_length=1, description=_ROUNDS)

    def to_messages(self) -> list[Message]:
        """OpenAI messages: system, then per round user, steps (call + tool result, or text), reply.

        Call ids are `call_1`, `call_2`, ... in order through the conversation; arguments are
        serialised to the JSON string OpenAI's format carries, optional parameters written
        as null left out.
        """
        messages: list[Message] = [SystemMessage(content=self.system)]
        n = 0
        for rnd in self.rounds:
            messages.append(UserMessage(content=rnd.user))
            said: list[str] = []  # text steps waiting for the call (or the reply) they ride on
            for step in rnd.steps:
                if isinstance(step, TextStep):
                    said.append(step.say)
                    continue
                n += 1
                call_id = f"call_{n}"
                arguments = json.dumps(step.call.argument_object(), ensure_ascii=False)
                messages.append(AssistantMessage(content="\n\n".join(said) or None, tool_calls=[
                    ToolCall(id=call_id, function=FunctionCall(name=step.call.name, arguments=arguments))]))
                messages.append(ToolMessage(tool_call_id=call_id, content=step.result))
                said = []
            messages.append(AssistantMessage(content="\n\n".join([*said, rnd.reply])))
        return messages

    def plain(self) -> "Conversation":
        """This conversation in the general shape: arguments as plain objects under their parameter names,
        unused optional ones (null) left out. What a later stage is shown: a narrowed conversation's
        argument objects would otherwise print with their neutral field names (`p0`, `p1`)."""
        rounds = []
        for rnd in self.rounds:
            steps = [{"say": s.say} if isinstance(s, TextStep) else
                     {"call": {"name": s.call.name, "arguments": s.call.argument_object()}, "result": s.result}
                     for s in rnd.steps]
            rounds.append({"user": rnd.user, "steps": steps, "reply": rnd.reply})
        return Conversation.model_validate({"system": self.system, "rounds": rounds})

    @classmethod
    def from_messages(cls, messages: list[Message]) -> "Conversation":
        """The rounds of an OpenAI conversation (a recorded or accepted one, shown to a model as a demo or to rewrite).

        Lossy only where the OpenAI form says more than rounds can: text beside a call is
        kept as a text step before it, a second call in one turn becomes a step of its own,
        and assistant turns before the first user turn are dropped. Raises ValueError for
        a conversation with no user turn.
        """
        system = ""
        rounds: list[dict] = []
        results = {m.tool_call_id: content_text(m.content) for m in messages if isinstance(m, ToolMessage)}
        for m in messages:
            if isinstance(m, SystemMessage):
                system = system or content_text(m.content)
            elif isinstance(m, UserMessage):
                rounds.append({"user": content_text(m.content), "steps": [], "reply": ""})
            elif isinstance(m, AssistantMessage) and rounds:
                text = content_text(m.content)
                steps = rounds[-1]["steps"]
                if rounds[-1]["reply"]:  # an earlier text turn was not the last: it was a step
                    steps.append({"say": rounds[-1]["reply"]})
                    rounds[-1]["reply"] = ""
                if m.tool_calls:
                    if text:
                        steps.append({"say": text})
                    for c in m.tool_calls:
                        try:
                            arguments = json.loads(c.function.arguments)
                        except ValueError:
                            arguments = {}
                        steps.append({"call": {"name": c.function.name,
                                               "arguments": arguments if isinstance(arguments, dict) else {}},
                                      "result": results.get(c.id, "")})
                else:
                    rounds[-1]["reply"] = text
        if not rounds:
            raise ValueError("a conversation needs a user turn to be written in rounds")
        for rnd in rounds:
            rnd["reply"] = rnd["reply"] or "(no reply)"
            rnd["user"] = rnd["user"] or "(no text)"
        return cls.model_validate({"system": system or "(no system prompt)", "rounds": rounds})


# -- one tool set's narrowed shape ------------------------------------------------------

_PYTHON_TYPES: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool,
                                 "object": dict[str, Any], "array": list[Any]}


def parameter_type(p: ToolParameter) -> Any:
    """The Python type whose JSON Schema is `p.to_schema()`: a closed set is a Literal of its typed values."""
    if p.type in ("string", "integer", "number") and p.enum:
        values = p.to_schema().get("enum") or []
        if values:
            return Literal[tuple(values)]
    if p.type == "array":
        values = (p.to_schema().get("items") or {}).get("enum")
        return list[Literal[tuple(values)]] if values else list[_PYTHON_TYPES.get(p.items_type or "string", str)]
    return _PYTHON_TYPES[p.type]


def arguments_model(spec: ToolSpec) -> type[BaseModel]:
    """The closed object of one tool's arguments: its parameters, required ones required, no others.

    Optional parameters accept null (strict structured output makes every property
    required, so an unused optional one is written as null and dropped on conversion).
    Python field names are neutral (`p0`, `p1`, ...) with the parameter names as aliases,
    so a parameter called `model_id`, `json` or `class` is as valid as any other.
    """
    fields: dict[str, Any] = {}
    for i, p in enumerate(spec.parameters):
        annotation = parameter_type(p)
        if p.required:
            fields[f"p{i}"] = (annotation, Field(alias=p.name, description=p.description))
        else:
            fields[f"p{i}"] = (annotation | None, Field(default=None, alias=p.name, description=p.description))
    return create_model(f"{spec.name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)


def call_model(spec: ToolSpec) -> type[CallDraft]:
    """A call to exactly this tool: `name` the constant tool name, `arguments` its closed argument object."""
    return create_model(f"call_{spec.name}", __base__=CallDraft,
                        name=(Literal[spec.name], Field(description=f"`{spec.name}`: {spec.description}")),
                        arguments=(arguments_model(spec), Field(description=_ARGUMENTS)))


def conversation_over(tools: list[ToolSpec]) -> type[Conversation]:
    """`Conversation` whose every call is a call to one of `tools` with that tool's arguments.

    Tool names must be unique (`programs/toolset.py` merges duplicates first); with no
    tools the shape is the general one. Its JSON Schema is the per-segment
    `response_format` a constrained decoder follows.
    """
    if not tools:
        return Conversation
    calls = tuple(call_model(t) for t in tools)
    call_type = calls[0] if len(calls) == 1 else Union[calls]  # noqa: UP007 (a runtime tuple of types)
    step = create_model("ToolStep", __base__=ToolStep, call=(call_type, ...))
    rnd = create_model("Round", __base__=Round,
                       steps=(list[Union[step, TextStep]], Field(default_factory=list, description=_STEPS)))
    return create_model("Conversation", __base__=Conversation,
                        rounds=(list[rnd], Field(min_length=1, description=_ROUNDS)))
