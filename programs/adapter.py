"""The DSPy adapter gem-synth talks to models through: DSPy's JSONAdapter, with JSON's words for types.

DSPy's JSONAdapter asks for a JSON object but describes a boolean field as "must be
formatted as a valid Python bool" and "must be True or False": in JSON that is `true` /
`false`, and the models answering our requests reported the contradiction. This adapter
keeps everything else of JSONAdapter (structured output, parsing, demos) and names each
output field's type as JSON does.
"""

from __future__ import annotations

import typing

import dspy
from pydantic import BaseModel


def json_kind(annotation: typing.Any) -> str:
    """How a field's value is written in JSON, in words, e.g. `a JSON boolean: true or false`."""
    origin = typing.get_origin(annotation)
    if annotation is bool:
        return "a JSON boolean: true or false"
    if annotation is int:
        return "a JSON integer"
    if annotation is float:
        return "a JSON number"
    if origin is typing.Literal:
        return "a JSON string, exactly one of the values listed for it"
    if origin in (list, tuple, set):
        return "a JSON array that follows the field's schema"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "a JSON object that follows the field's schema"
    return "a JSON value that follows the field's schema"


class GEMJSONAdapter(dspy.JSONAdapter):
    """JSONAdapter whose field instructions use JSON's types (`true`/`false`), never Python's."""

    def format_field_structure(self, signature: type[dspy.Signature]) -> str:
        return super().format_field_structure(signature).replace(
            "must be True or False", "must be a JSON boolean: true or false")

    def user_message_output_requirements(self, signature: type[dspy.Signature]) -> str:
        fields = []
        for name, field in signature.output_fields.items():
            kind = "" if field.annotation is str else f" ({json_kind(field.annotation)})"
            fields.append(f"`{name}`{kind}")
        return "Respond with a JSON object in the following order of fields: " + ", then ".join(fields) + "."
