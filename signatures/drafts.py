"""The shape a model writes a tool set in, and its canonical OpenAI form.

A model is asked for flat, closed shapes rather than the OpenAI types themselves:
- strict structured-output modes (OpenAI's, llama.cpp grammars) accept neither an
  open `dict[str, Any]` (a JSON Schema `parameters` would be forced empty) nor `oneOf`
  unions (the role-discriminated message union);
- a parameter list is easier to write correctly than free JSON Schema, and always
  converts to a valid schema.
- names are identifiers by their schema (`IDENTIFIER_PATTERN`), so a constrained decoder
  cannot write a sentence-long tool or parameter name (validator rule T002).
`ToolSpec.to_tool()` gives the canonical OpenAI type; conversations are in
`signatures/conversation.py`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from gem_synth.signatures.chat import FunctionDefinition, Tool

JsonType = Literal["string", "integer", "number", "boolean", "array", "object"]
_JSON_TYPES = ("string", "integer", "number", "boolean", "array", "object")
WRITE_MARK = " (write operation)"
# OpenAI's rule for function names (letters, digits, underscore; at most 64), starting with a letter.
IDENTIFIER_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"


class ToolParameter(BaseModel):
    name: str = Field(description="Self-explanatory snake_case name, e.g. `claim_id`, `departure_date`.",
                      pattern=IDENTIFIER_PATTERN)
    type: JsonType = Field(description="Precise JSON type of the value.")
    description: str = Field(description="What the value means, its format (e.g. ISO 8601 date) and units.")
    required: bool = Field(description="True if the call is meaningless without it.")
    enum: list[str] = Field(default_factory=list, description='Allowed values when the set is closed, else empty; '
                                                             'for an integer or number, its values as strings ("6", "12").')
    items_type: JsonType | None = Field(default=None, description="Element type when `type` is array, else null.")

    def to_schema(self) -> dict:
        """The parameter's JSON Schema; an enum is typed as the parameter (or, for an array, its items)."""
        schema: dict = {"type": self.type, "description": self.description}
        if self.type == "array":
            schema["items"] = {"type": self.items_type or "string"}
            if self.enum and schema["items"]["type"] in ("string", "integer", "number"):
                schema["items"]["enum"] = _typed_enum(self.enum, schema["items"]["type"]) or None
        elif self.enum and self.type in ("string", "integer", "number"):
            schema["enum"] = _typed_enum(self.enum, self.type) or None
        return _without_none(schema)


def _without_none(schema: dict) -> dict:
    out = {k: v for k, v in schema.items() if v is not None}
    if isinstance(out.get("items"), dict):
        out["items"] = {k: v for k, v in out["items"].items() if v is not None}
    return out


def _typed_enum(values: list[str], json_type: str) -> list:
    """Enum values in the parameter's own type: a closed set of integers is written as strings by the
    model (strict structured output wants one item type) and must be integers in the schema, or every
    call fails it (C004). Values that do not convert are dropped."""
    if json_type not in ("integer", "number"):
        return list(dict.fromkeys(values))  # an enum lists each value once (a repeated one is T004)
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
    return list(dict.fromkeys(out))


class ToolSpec(BaseModel):
    name: str = Field(description="snake_case verb_object name, e.g. `submit_claim`; unique in the tool set.",
                      pattern=IDENTIFIER_PATTERN)
    description: str = Field(min_length=1,
                             description="One or two sentences: what it does, what it returns, its side effects.")
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
                enum=[str(v) for v in schema.get("enum") or (schema.get("items") or {}).get("enum") or []],
                items_type=(schema.get("items") or {}).get("type") if json_type == "array" else None))
        write = tool.function.description.endswith(WRITE_MARK)
        return cls(name=tool.name, description=tool.function.description.removesuffix(WRITE_MARK),
                   kind="write" if write else "read", parameters=parameters)


def tools_from_specs(specs: list[ToolSpec]) -> list[Tool]:
    return [s.to_tool() for s in specs]
