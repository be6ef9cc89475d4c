"""The OpenAI chat format: tools, tool calls and messages.

This is gem-synth's canonical trajectory form because it is what trainers (TRL's
`messages` + `tools` columns) and chat templates consume. Every type loads from and
dumps back to exactly that JSON: `to_openai()` gives the dict a consumer reads, and
`Model.model_validate(d).to_openai() == d` for any well-formed OpenAI-format `d`.

Tool-call arguments stay a JSON *string*, as in the OpenAI API: Arrow would otherwise
unify argument structs across rows and give every call every other tool's keys.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class _OpenAIModel(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def to_openai(self) -> dict[str, Any]:
        """The exact dict an OpenAI-format consumer reads (unset optional keys omitted)."""
        return self.model_dump(mode="json", exclude_none=True, by_alias=True)


class FunctionDefinition(_OpenAIModel):
    name: str = Field(description="Function name, an identifier such as `get_claim_status`.")
    description: str = Field(default="", description="What the function does, for the model that calls it.")
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="A JSON Schema object describing the arguments.",
    )
    strict: bool | None = None


class Tool(_OpenAIModel):
    """`{"type": "function", "function": {"name", "description", "parameters"}}`."""

    type: Literal["function"] = "function"
    function: FunctionDefinition

    @property
    def name(self) -> str:
        return self.function.name


class FunctionCall(_OpenAIModel):
    name: str
    arguments: str = Field(description="The arguments as a JSON object serialised to a string.")


class ToolCall(_OpenAIModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class TextPart(_OpenAIModel):
    type: Literal["text"] = "text"
    text: str


Content = Union[str, list[TextPart], None]


def content_text(content: Content) -> str:
    """Plain text of a message content, whichever of the OpenAI shapes it has."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.text for part in content)


def message_text(message: dict[str, Any]) -> str:
    """The text of an OpenAI message given as JSON (string content, text parts, or null), for records
    read from anywhere: anything that is not text counts as none."""
    content = message.get("content")
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return content if isinstance(content, str) else ""


class SystemMessage(_OpenAIModel):
    role: Literal["system"] = "system"
    content: Union[str, list[TextPart]]
    name: str | None = None


class UserMessage(_OpenAIModel):
    role: Literal["user"] = "user"
    content: Union[str, list[TextPart]]
    name: str | None = None


class AssistantMessage(_OpenAIModel):
    role: Literal["assistant"] = "assistant"
    content: Content = None
    tool_calls: list[ToolCall] | None = None
    name: str | None = None

    def to_openai(self) -> dict[str, Any]:
        # OpenAI always sends `content` on assistant messages, null beside tool calls.
        out = super().to_openai()
        out.setdefault("content", None)
        return out


class ToolMessage(_OpenAIModel):
    role: Literal["tool"] = "tool"
    tool_call_id: str
    content: Union[str, list[TextPart]]
    name: str | None = None


Message = Annotated[
    Union[SystemMessage, UserMessage, AssistantMessage, ToolMessage],
    Field(discriminator="role"),
]

MESSAGES = TypeAdapter(list[Message])
TOOLS = TypeAdapter(list[Tool])


def messages_to_openai(messages: list[Message]) -> list[dict[str, Any]]:
    return [m.to_openai() for m in messages]


def tools_to_openai(tools: list[Tool]) -> list[dict[str, Any]]:
    return [t.to_openai() for t in tools]
