"""Conversations in rounds: malformed trajectories are unrepresentable, and the per-segment schema
reaches every backend that can decode against it (issue 16)."""

import json

import dspy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from gem_synth.programs.adapter import GEMJSONAdapter, decoding_mode, output_schema
from gem_synth.running.exports import to_sharegpt
from gem_synth.backends.embedded import capped
from gem_synth.backends.models import ModelSpec, build_lm
from gem_synth.programs.pipeline import GEMPipeline
from gem_synth.programs.toolset import normalise_tools
from gem_synth.programs.validator import RULES, errors, validate
from gem_synth.signatures import TrajectoryGeneration, TrajectorySynthesis
from gem_synth.signatures.conversation import Conversation, conversation_over
from gem_synth.signatures.drafts import ToolParameter, ToolSpec
from gem_synth.signatures.records import Trajectory
from tests.fake_openai import FakeOpenAIServer
from tests.fixtures import CONVERSATION, PROCEDURE, TOOL_SPECS, handlers
from tests.scripted import ScriptedEngine, http_responder

SPECS = [ToolSpec(**s) for s in TOOL_SPECS]
# Every parameter shape a model can declare: arrays of enums and of arrays, objects, integer enums.
ODD = ToolSpec(name="tag_claim", description="Tag a claim.", kind="write", parameters=[
    ToolParameter(name="tags", type="array", items_type="string", enum=["urgent", "dental", "urgent"], description="t",
                  required=True),
    ToolParameter(name="matrix", type="array", items_type="array", description="m", required=False),
    ToolParameter(name="meta", type="object", description="free-form", required=False),
    ToolParameter(name="priority", type="integer", enum=["1", "2", "x"], description="p", required=False),
    ToolParameter(name="ratio", type="number", description="r", required=False),
    ToolParameter(name="urgent", type="boolean", enum=["true"], description="u", required=False)])
ALL_SPECS = [*SPECS, ODD]
# What rounds make impossible: ordering, pairing, ids, empty turns (the validator's codes).
STRUCTURAL = {"O001", "O002", "O003", "O004", "O005", "E001", "C006", "R001", "R002", "R003", "M001", "C002", "C007"}
# What the per-segment type makes impossible on top: calls outside the tool set or its argument schemas.
PER_SEGMENT = {"C001", "C003", "C004", "C005"}

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=30).filter(str.strip)


def _argument(p: ToolParameter):
    schema = p.to_schema()
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    items = (schema.get("items") or {})
    if p.type == "array":
        element = st.sampled_from(items["enum"]) if "enum" in items else (
            st.lists(st.integers(), max_size=2) if items.get("type") == "array" else _text)
        return st.lists(element, max_size=3)
    return {"string": _text, "integer": st.integers(-10**6, 10**6), "boolean": st.booleans(),
            "number": st.floats(-1e6, 1e6, allow_nan=False),
            "object": st.dictionaries(st.sampled_from(["a", "b"]), st.integers(), max_size=2)}[p.type]


@st.composite
def _step(draw):
    if draw(st.integers(0, 4)) == 0:
        return {"say": draw(_text)}
    spec = draw(st.sampled_from(ALL_SPECS))
    arguments = {p.name: draw(_argument(p)) for p in spec.parameters if p.required or draw(st.booleans())}
    return {"call": {"name": spec.name, "arguments": arguments}, "result": json.dumps({"ok": draw(_text)})}


_conversation = st.fixed_dictionaries({
    "system": _text,
    "rounds": st.lists(st.fixed_dictionaries({"user": _text, "steps": st.lists(_step(), max_size=4),
                                              "reply": _text}), min_size=1, max_size=5),
})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_conversation)
def test_any_conversation_in_rounds_over_the_tool_set_breaks_no_structural_or_call_rule(drawn):
    """Whatever a model writes in the narrowed shape, the OpenAI trajectory made from it keeps every rule
    of order, pairing, ids and call schemas: only content rules (grounding, a call at all) remain."""
    conversation = conversation_over(ALL_SPECS).model_validate(drawn)
    record = Trajectory(tools=[s.to_tool() for s in ALL_SPECS], messages=conversation.to_messages()).to_openai()
    codes = {v.code for v in validate(record)}
    assert not codes & (STRUCTURAL | PER_SEGMENT), codes
    assert codes <= {"G001", "O006"}
    # text steps ride on the next call or the reply: assistant messages never follow each other, so
    # strictly alternating chat templates (Mistral's) and ShareGPT readers take every trajectory
    roles = [m["role"] for m in record["messages"]]
    assert not any(a == b == "assistant" for a, b in zip(roles, roles[1:]))
    to_sharegpt(record)


def test_the_narrowed_schema_is_strict_and_names_each_tool_with_its_own_arguments():
    fmt = output_schema(TrajectoryGeneration.with_updated_fields("trajectory", type_=conversation_over(SPECS)))
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    Draft202012Validator.check_schema(schema)
    defs = schema["$defs"]
    assert defs["call_submit_claim"]["properties"]["name"]["const"] == "submit_claim"
    args = defs["submit_claim_arguments"]
    assert args["additionalProperties"] is False and set(args["required"]) == {"visit_id", "amount", "channel"}
    # strict mode lists every property as required; the optional one may be null, and is dropped as such
    assert {"type": "null"} in args["properties"]["channel"]["anyOf"]
    validator = Draft202012Validator(schema)
    good = {"trajectory": CONVERSATION, "patterns_used": []}
    with_null = json.loads(json.dumps(good))
    with_null["trajectory"]["rounds"][1]["steps"][0]["call"]["arguments"]["channel"] = None
    assert not list(validator.iter_errors(with_null))
    messages = conversation_over(SPECS).model_validate(with_null["trajectory"]).to_messages()
    assert json.loads(messages[6].tool_calls[0].function.arguments) == {"visit_id": "V-7", "amount": 80}
    for wrong_name, wrong_args in [("delete_patient", {"patient_id": "P-1"}), ("list_visits", {"claim_id": "C"}),
                                   ("submit_claim", {"visit_id": "V-7"}), ("submit_claim",
                                                                            {"visit_id": "V", "amount": "80"})]:
        bad = json.loads(json.dumps(good))
        bad["trajectory"]["rounds"][0]["steps"][0]["call"] = {"name": wrong_name, "arguments": wrong_args}
        assert list(validator.iter_errors(bad)), (wrong_name, wrong_args)


def test_the_synthesizer_schema_is_sent_but_not_strict():
    """Its tools are written in the same answer, so its calls are free-form objects: OpenAI's strict mode
    would force them empty; the schema goes out with strict false."""
    fmt = output_schema(TrajectorySynthesis)
    assert fmt["json_schema"]["strict"] is False
    Draft202012Validator.check_schema(fmt["json_schema"]["schema"])


def test_tool_and_parameter_names_are_identifiers_by_schema():
    schema = ToolSpec.model_json_schema()
    assert schema["properties"]["name"]["pattern"] == "^[A-Za-z][A-Za-z0-9_]{0,63}$"
    with pytest.raises(ValueError):
        ToolSpec(name="find a visit for the patient", description="d", kind="read")
    with pytest.raises(ValueError):
        ToolParameter(name="the visit", type="string", description="d", required=True)


def test_duplicates_are_settled_deterministically():
    a = ToolSpec(name="get_claim", description="first", kind="read", parameters=[
        ToolParameter(name="claim_id", type="string", description="id", required=True),
        ToolParameter(name="claim_id", type="integer", description="again", required=False)])
    b = ToolSpec(name="get_claim", description="second", kind="write", parameters=[
        ToolParameter(name="year", type="integer", description="y", required=False)])
    for order in ([a, b], [a, b]):  # the same input gives the same output
        tools, notes = normalise_tools(order)
        assert [t.name for t in tools] == ["get_claim"] and tools[0].description == "first"
        assert [(p.name, p.type) for p in tools[0].parameters] == [("claim_id", "string"), ("year", "integer")]
        assert notes == ["tool `get_claim` defined 2 times: merged (added `year`)",
                         "parameter `get_claim.claim_id` listed twice: first kept"]
    assert not errors([v for v in validate({"tools": [t.to_tool().to_openai() for t in tools], "messages": [
        {"role": "system", "content": "s"}, {"role": "user", "content": "u"}]}) if v.code.startswith("T")])


def test_a_blank_message_does_not_parse():
    """Whitespace passes a schema's minLength; the embedded model wrote it (E001 in 1 of 19 texts)."""
    for field, where in [("user", "rounds.0.user"), ("reply", "rounds.0.reply")]:
        bad = json.loads(json.dumps(CONVERSATION))
        bad["rounds"][0][field] = "  \n "
        with pytest.raises(ValueError, match="blank text"):
            conversation_over(SPECS).model_validate(bad)
    with pytest.raises(ValueError, match="blank text"):
        Conversation.model_validate({**CONVERSATION, "system": " "})


def test_from_messages_reads_back_imported_conversations_in_rounds():
    messages = Conversation.model_validate(CONVERSATION).to_messages()
    assert Conversation.from_messages(messages).to_messages() == messages
    with pytest.raises(ValueError, match="needs a user turn"):
        Conversation.from_messages(messages[:1])


class _LM:
    def __init__(self, model="", api_base=None, schema=False, params=(), forced=None):
        self.model, self.kwargs = model, ({"api_base": api_base} if api_base else {})
        self.supports_response_schema, self.supported_params = schema, set(params)
        if forced:
            self.gem_constrain = forced


def test_decoding_mode_per_backend():
    assert decoding_mode(build_lm(ModelSpec(model="replay/tests/recordings/strong-model.jsonl"))) in ("schema",)
    assert decoding_mode(_LM("hosted_vllm/qwen")) == "schema"  # DSPy's table does not know it: we do
    assert decoding_mode(_LM("openai/llama", api_base="http://127.0.0.1:8080/v1")) == "schema"
    assert decoding_mode(_LM("openai/gpt-4o", schema=True)) == "schema"
    assert decoding_mode(_LM("someprovider/model", params={"response_format"})) == "json"
    assert decoding_mode(_LM("someprovider/model")) == "off"
    assert decoding_mode(_LM("hosted_vllm/qwen", forced="off")) == "off"


@pytest.mark.parametrize("constrain, expected", [(None, "json_schema"), ("json", "json_object"), ("off", None)])
def test_an_open_model_behind_hosted_vllm_gets_the_per_segment_schema(constrain, expected):
    """What an OpenAI-compatible server (vLLM, SGLang, llama.cpp's server) receives, request by request."""
    with FakeOpenAIServer(http_responder(ScriptedEngine(handlers()))) as server:
        lm = build_lm(ModelSpec(model="hosted_vllm/qwen", api_base=server.url, num_retries=0,
                                **({"constrain": constrain} if constrain else {})), cache=False)
        with dspy.context(lm=lm, adapter=GEMJSONAdapter()):
            assert GEMPipeline()(text=PROCEDURE).result.outcome == "accepted"
    formats = [r["body"].get("response_format") for r in server.requests]
    assert len(formats) == 6
    assert [(f or {}).get("type") for f in formats] == [expected] * 6
    if expected == "json_schema":
        generate = next(f for f in formats if f["json_schema"]["name"] == "TrajectoryGenerationOutput")
        assert generate["json_schema"]["strict"] is True
        names = {d["properties"]["name"]["const"] for k, d in generate["json_schema"]["schema"]["$defs"].items()
                 if k.startswith("call_")}
        assert names == {s.name for s in SPECS}


def test_the_embedded_engine_asks_for_calls_and_keeps_within_its_caps():
    schema = output_schema(TrajectoryGeneration.with_updated_fields("trajectory", type_=conversation_over(SPECS)))
    out = capped(schema["json_schema"]["schema"], 3, 120, {"rounds": 3, "steps": 2}, calls_only=True)
    step_items = out["$defs"]["Round"]["properties"]["steps"]
    assert step_items["minItems"] == 1 and step_items["maxItems"] == 2
    assert [a["$ref"] for a in step_items["items"]["anyOf"]] == ["#/$defs/ToolStep"]
    assert out["$defs"]["Conversation"]["properties"]["rounds"]["maxItems"] == 3
    # every parameter shape becomes a grammar llama.cpp accepts (an array of any values once did not)
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    wide = output_schema(TrajectoryGeneration.with_updated_fields("trajectory", type_=conversation_over(ALL_SPECS)))
    assert json_schema_to_gbnf(json.dumps(capped(wide["json_schema"]["schema"], 3, 60, {}, calls_only=True)))


def test_the_new_rule_is_documented():
    assert RULES["O006"].severity == "error" and RULES["O006"].rule_set == "gem"


def test_an_unknown_constrain_mode_is_one_line(tmp_path, capsys):
    from gem_synth.cli.main import main

    config = tmp_path / "lm.toml"
    config.write_text('[lm]\nconstrain = "bogus"\n')
    corpus = tmp_path / "a.md"
    corpus.write_text(PROCEDURE)
    assert main(["run", str(corpus), "--out", str(tmp_path / "o"), "--config", str(config), "--no-track"]) == 2
    assert capsys.readouterr().err == ("gem-synth: error: constrain 'bogus' (--constrain or [lm] constrain): "
                                       "choose one of auto, schema, json, off\n")
