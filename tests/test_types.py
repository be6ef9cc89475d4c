"""The data types load and dump exactly the JSON OpenAI-format consumers read."""

import json

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from gem_synth.signatures.chat import MESSAGES, TOOLS, AssistantMessage
from gem_synth.signatures.conversation import Conversation
from gem_synth.signatures.drafts import ToolParameter, ToolSpec
from gem_synth.signatures.records import Trajectory, TrajectoryStats
from gem_synth.signatures.workflow import Workflow
from tests.fixtures import CONVERSATION, TOOL_SPECS, TURNS, WORKFLOWS

# As the OpenAI API and TRL datasets spell them.
OPENAI_TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_order", "description": "Look up an order.",
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"],
                       "additionalProperties": False},
        "strict": True,
    },
}]
OPENAI_MESSAGES = [
    {"role": "system", "content": "You are a store assistant."},
    {"role": "user", "content": [{"type": "text", "text": "Where is order 42?"}]},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_abc", "type": "function", "function": {"name": "get_order", "arguments": "{\"order_id\": \"42\"}"}},
    ]},
    {"role": "tool", "tool_call_id": "call_abc", "content": "{\"status\": \"shipped\"}"},
    {"role": "assistant", "content": "Order 42 has shipped.", "name": "store_bot"},
]


def test_openai_messages_and_tools_round_trip_exactly():
    messages = MESSAGES.validate_python(OPENAI_MESSAGES)
    assert [m.to_openai() for m in messages] == OPENAI_MESSAGES
    tools = TOOLS.validate_python(OPENAI_TOOLS)
    assert [t.to_openai() for t in tools] == OPENAI_TOOLS
    record = {"tools": OPENAI_TOOLS, "messages": OPENAI_MESSAGES}
    assert Trajectory.from_openai(json.loads(json.dumps(record))).to_openai() == record


@pytest.mark.parametrize("bad", [
    {"role": "robot", "content": "hi"},
    {"role": "tool", "content": "{}"},  # no tool_call_id
    {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f"}}]},  # no arguments
    {"role": "user", "content": "hi", "extra": 1},
])
def test_malformed_messages_are_refused(bad):
    with pytest.raises(ValidationError):
        MESSAGES.validate_python([bad])


def test_tool_specs_become_valid_json_schema_and_typed_arguments_validate():
    for spec in TOOL_SPECS:
        tool = ToolSpec(**spec).to_tool()
        Draft202012Validator.check_schema(tool.function.parameters)
    submit = ToolSpec(**TOOL_SPECS[2]).to_tool().function.parameters
    assert submit["required"] == ["visit_id", "amount"]
    assert submit["properties"]["channel"] == {"type": "string", "description": "Where it was filed.",
                                               "enum": ["portal", "phone"]}
    validator = Draft202012Validator(submit)
    assert validator.is_valid({"visit_id": "V-7", "amount": 80.5})
    assert not validator.is_valid({"visit_id": "V-7", "amount": "80"})
    assert not validator.is_valid({"visit_id": "V-7"})
    tags = ToolParameter(name="tags", type="array", description="Labels.", required=False, items_type="string")
    assert tags.to_schema()["items"] == {"type": "string"}


def test_write_tools_say_so_in_their_description():
    assert ToolSpec(**TOOL_SPECS[2]).to_tool().function.description.endswith("(write operation)")
    assert "(write operation)" not in ToolSpec(**TOOL_SPECS[0]).to_tool().function.description


def test_rounds_map_to_openai_messages_and_back():
    messages = Conversation.model_validate(CONVERSATION).to_messages()
    assert isinstance(messages[2], AssistantMessage) and messages[2].content is None
    assert messages[2].tool_calls[0].id == "call_1" and messages[3].tool_call_id == "call_1"
    assert messages[6].tool_calls[0].function.arguments == '{"visit_id": "V-7", "amount": 80}'
    assert Conversation.from_messages(messages).model_dump() == Conversation.model_validate(CONVERSATION).model_dump()


def test_workflow_graph_follows_dependencies_and_ignores_cycles():
    wf = Workflow(**WORKFLOWS[0])
    assert wf.graph() == "(find_visit) -> (submit) -> (track)"
    shuffled = Workflow(name="w", goal="g", steps=[
        {"name": "edit", "description": "", "depends_on": ["login", "search"]},
        {"name": "search", "description": "", "depends_on": ["login"]},
        {"name": "login", "description": "", "depends_on": ["edit"]},  # a cycle back: ignored
    ])
    assert shuffled.graph() == "(login) -> (search) -> [login + search] (edit)"


def test_stats_count_calls_tools_and_turns():
    traj = Trajectory(tools=[ToolSpec(**s).to_tool() for s in TOOL_SPECS], messages=Conversation.model_validate(CONVERSATION).to_messages())
    assert TrajectoryStats.of(traj.tools, traj.messages).model_dump() == {
        "messages": 9, "user_turns": 2, "assistant_turns": 4, "tool_calls": 2, "distinct_tools_used": 2,
        "tools_defined": 3}
    transcript = traj.transcript()
    assert transcript.startswith("[0] system\n") and "[3] tool (answers call_1)" in transcript
    assert '-> call call_2: submit_claim({"visit_id": "V-7", "amount": 80})' in transcript


def test_tool_specs_round_trip_through_openai_tools():
    for spec in TOOL_SPECS:
        original = ToolSpec(**spec)
        assert ToolSpec.from_tool(original.to_tool()) == original


def test_an_integer_closed_set_is_an_integer_enum_in_the_schema():
    """A model writes enum values as strings (the shape allows one item type); a helper answering as the
    model reported that a closed set of months (6 or 12) could not be expressed as integers."""
    from jsonschema import Draft202012Validator

    from gem_synth.signatures.drafts import ToolParameter

    schema = ToolParameter(name="duration_months", type="integer", description="Months.", required=True,
                           enum=["6", "12", "six"]).to_schema()
    assert schema["enum"] == [6, 12]
    assert Draft202012Validator(schema).is_valid(6) and not Draft202012Validator(schema).is_valid("6")
    assert ToolParameter(name="x", type="string", description="d", required=True, enum=["6"]).to_schema()["enum"] == ["6"]
