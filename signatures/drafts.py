"""The shapes a model writes tools and conversations in, and their canonical forms.

A model is asked for flat, closed shapes rather than the OpenAI types themselves:
- strict structured-output modes (OpenAI's, llama.cpp grammars) accept neither an
  open `dict[str, Any]` (a JSON Schema `parameters` would be forced empty) nor `oneOf`
  unions (the role-discriminated message union);
- a parameter list is easier to write correctly than free JSON Schema, and always
  converts to a valid schema.
`ToolSpec.to_tool()` and `Turn.to_message()` give the canonical OpenAI types.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from gem_synth.signatures.chat import (
    AssistantMessage,
    FunctionCall,
    FunctionDefinition,
    Message,
    SystemMessage,
    Tool,
    ToolCall,
    ToolMessage,
    UserMessage,
    content_text,
)

JsonType = Literal["string", "integer", "number", "boolean", "array", "object"]
_JSON_TYPES = ("string", "integer", "number", "boolean", "array", "object")
WRITE_MARK = " (write operation)"


class ToolParameter(BaseModel):
    name: str = Field(description="Self-explanatory snake_case name, e.g. `claim_id`, `departure_date`.")
    type: JsonType = Field(description="Precise JSON type of the value.")
    description: str = Field(description="What the value means, its format (e.g. ISO 8601 date) and units.")
    required: bool = Field(description="True if the call is meaningless without it.")
    enum: list[str] = Field(default_factory=list, description='Allowed values when the set is closed, else empty; '
                                                             'for an integer or number, its values as strings ("6", "12").')
    items_type: JsonType | None = Field(default=None, description="Element type when `type` is array, else null.")

    def to_schema(self) -> dict:
        schema: dict = {"type": self.type, "description": self.description}
        if self.enum:
            schema["enum"] = _typed_enum(self.enum, self.type)
        if self.type == "array":
            schema["items"] = {"type": self.items_type or "string"}
        return schema


def _typed_enum(values: list[str], json_type: str) -> list:
    """Enum values in the parameter's own type: a closed set of integers is written as strings by the
    model (strict structured output wants one item type) and must be integers in the schema, or every
    call fails it (C004). Values that do not convert are dropped."""
    if json_type not in ("integer", "number"):
        return list(values)
    out = []
    for value in values:
        try:
            number = float(value)
        except ValueError:
            continue
        if json_type == "integer":
            if number.is_integer():
                out.append(int(number))
        else:
            out.append(int(number) if number.is_integer() else number)
    return out


class ToolSpec(BaseModel):
    name: str = Field(description="snake_case verb_object name, e.g. `submit_claim`; unique in the tool set.")
    description: str = Field(description="One or two sentences: what it does, what it returns, its side effects.")
    kind: Literal["read", "write"] = Field(description="`read` only looks data up; `write` creates, changes or deletes.")
    parameters: list[ToolParameter] = Field(default_factory=list)

    def to_tool(self) -> Tool:
        properties = {p.name: p.to_schema() for p in self.parameters}
        required = [p.name for p in self.parameters if p.required]
        parameters: dict = {"type": "object", "properties": properties}
        if required:
            parameters["required"] = required
        description = self.description if self.kind == "read" else f"{self.description}{WRITE_MARK}"
        return Tool(function=FunctionDefinition(name=self.name, description=description, parameters=parameters))

    @classmethod
    def from_tool(cls, tool: Tool) -> "ToolSpec":
        """The inverse of `to_tool` (for tools it made): distilled demos show tools in this shape."""
        params = tool.function.parameters
        props = params.get("properties") or {}
        required = set(params.get("required") or [])
        parameters = []
        for name, schema in props.items():
            json_type = schema.get("type") if schema.get("type") in _JSON_TYPES else "string"
            parameters.append(ToolParameter(
                name=name, type=json_type, description=schema.get("description", ""), required=name in required,
                enum=[str(v) for v in schema.get("enum", [])],
                items_type=(schema.get("items") or {}).get("type") if json_type == "array" else None))
        write = tool.function.description.endswith(WRITE_MARK)
        return cls(name=tool.name, description=tool.function.description.removesuffix(WRITE_MARK),
                   kind="write" if write else "read", parameters=parameters)


class DraftToolCall(BaseModel):
    id: str = Field(description="Unique call id within the conversation, e.g. `call_1`, `call_2`.")
    name: str = Field(description="Exactly the name of one tool in the tool set.")
    arguments: str = Field(description='The arguments as a JSON object in a string, e.g. "{\\"claim_id\\": \\"CLM-2291\\"}".')


class Turn(BaseModel):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = Field(description='The text of the turn; "" for an assistant turn that makes a tool call. '
                                     "For a tool turn: the tool's JSON result or error.")
    tool_calls: list[DraftToolCall] = Field(
        default_factory=list, description="Assistant turns only: the one call this turn makes; empty for every other turn."
    )
    tool_call_id: str = Field(default="", description="Tool turns only: the id of the call this answers, else empty.")

    def to_message(self) -> Message:
        if self.role == "system":
            return SystemMessage(content=self.content)
        if self.role == "user":
            return UserMessage(content=self.content)
        if self.role == "tool":
            return ToolMessage(tool_call_id=self.tool_call_id, content=self.content)
        calls = [ToolCall(id=c.id, function=FunctionCall(name=c.name, arguments=c.arguments)) for c in self.tool_calls]
        return AssistantMessage(content=self.content or None, tool_calls=calls or None)

    @classmethod
    def from_message(cls, message: Message) -> "Turn":
        if isinstance(message, AssistantMessage):
            calls = [DraftToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments)
                     for c in message.tool_calls or []]
            return cls(role="assistant", content=content_text(message.content), tool_calls=calls)
        if isinstance(message, ToolMessage):
            return cls(role="tool", content=content_text(message.content), tool_call_id=message.tool_call_id)
        return cls(role=message.role, content=content_text(message.content))


def tools_from_specs(specs: list[ToolSpec]) -> list[Tool]:
    return [s.to_tool() for s in specs]


def messages_from_turns(turns: list[Turn]) -> list[Message]:
    return [t.to_message() for t in turns]
