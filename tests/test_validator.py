"""Every GEM rule check: the valid trajectory passes; each case breaks exactly one rule."""

import copy
import json

import pytest

from gem_synth.programs.validator import RULES, errors, validate
from tests.fixtures import openai_record


def call(name, args, cid):
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


def tool(name="extra_tool", description="Does a thing.", parameters=None):
    return {"type": "function", "function": {"name": name, "description": description,
                                             "parameters": parameters or {"type": "object", "properties": {}}}}


def add_tool(t):
    return lambda r: r["tools"].append(t)


def set_msg(i, m):
    def change(r):
        r["messages"][i] = m
    return change


def insert_msg(i, m):
    return lambda r: r["messages"].insert(i, m)


def set_args(i, args):
    def change(r):
        r["messages"][i]["tool_calls"][0]["function"]["arguments"] = args if isinstance(args, str) else json.dumps(args)
    return change


def _no_users(r):
    said = " ".join(m["content"] for m in r["messages"] if m["role"] == "user")
    r["messages"] = [{"role": "system", "content": r["messages"][0]["content"] + " Request: " + said},
                     *[m for m in r["messages"][1:] if m["role"] != "user"]]


def _no_calls(r):
    r["messages"] = [r["messages"][0], r["messages"][1], {"role": "assistant", "content": "Which visit is it for?"}]


def _reuse_id(r):
    r["messages"][6]["tool_calls"][0]["id"] = "call_1"
    r["messages"][7]["tool_call_id"] = "call_1"


def _rename_call(r):
    r["messages"][2]["tool_calls"][0]["function"]["name"] = "find_visits"


def _fax_channel(r):
    r["messages"][5]["content"] = "Yes, please submit it by fax."
    set_args(6, {"visit_id": "V-7", "amount": 80, "channel": "fax"})(r)


def _second_call(r):
    r["messages"][6]["tool_calls"].append(call("list_visits", {"patient_id": "P-100"}, "call_3"))


CASES = {
    "T001 tool without function": ("T001", None, add_tool({"type": "function"})),
    "T002 tool name with spaces": ("T002", None, add_tool(tool(name="find a visit"))),
    "T003 duplicate tool name": ("T003", None, lambda r: r["tools"].append(copy.deepcopy(r["tools"][0]))),
    "T004 parameters not an object": ("T004", None, add_tool(tool(parameters={"type": "array"}))),
    "T004 invalid JSON Schema": ("T004", None, add_tool(tool(parameters={
        "type": "object", "properties": {"x": {"type": "strnig"}}}))),
    "T004 required not a property": ("T004", None, add_tool(tool(parameters={
        "type": "object", "properties": {}, "required": ["x"]}))),
    "T005 empty description": ("T005", None, add_tool(tool(description=" "))),
    "T006 untyped parameter": ("T006", None, add_tool(tool(parameters={
        "type": "object", "properties": {"x": {"description": "no type"}}}))),
    "T007 secret parameter": ("T007", None, add_tool(tool(name="verify_account", parameters={
        "type": "object", "properties": {"account_pin": {"type": "string"}}}))),
    "M001 unknown role": ("M001", 5, set_msg(5, {"role": "customer", "content": "Yes, please submit it."})),
    "O001 no system first": ("O001", 0, lambda r: r["messages"].pop(0)),
    "O002 system in the middle": ("O002", 5, insert_msg(5, {"role": "system", "content": "Reminder."})),
    "O003 user after tool": ("O003", 4, insert_msg(4, {"role": "user", "content": "Thanks"})),
    "O004 ends with user": ("O004", 9, lambda r: r["messages"].append({"role": "user", "content": "Bye"})),
    "O005 no user turn": ("O005", None, _no_users),
    "O006 no tool call": ("O006", None, _no_calls),
    "E001 empty assistant": ("E001", 4, set_msg(4, {"role": "assistant", "content": ""})),
    "C001 unknown tool": ("C001", 2, _rename_call),
    "C002 arguments not JSON": ("C002", 2, set_args(2, "patient_id=P-100")),
    "C002 arguments a list": ("C002", 2, set_args(2, ["P-100"])),
    "C003 unknown argument": ("C003", 2, set_args(2, {"patient_id": "P-100", "patient": "P-100"})),
    "C004 wrong type": ("C004", 6, set_args(6, {"visit_id": "V-7", "amount": "80"})),
    "C004 not in enum": ("C004", 6, _fax_channel),
    "C005 missing required": ("C005", 6, set_args(6, {"visit_id": "V-7"})),
    "C006 reused call id": ("C006", 6, _reuse_id),
    "R001 unanswered call": ("R001", 6, _second_call),
    "R002 unmatched tool message": ("R002", 4, insert_msg(4, {"role": "tool", "tool_call_id": "call_x",
                                                              "content": "{}"})),
    "R003 answered twice": ("R003", 4, insert_msg(4, {"role": "tool", "tool_call_id": "call_1", "content": "{}"})),
    "G001 invented value": ("G001", 2, set_args(2, {"patient_id": "P-999"})),
    "C007 arguments as an object": ("C007", 2, lambda r: r["messages"][2]["tool_calls"][0]["function"].update(
        arguments={"patient_id": "P-100"})),
}


def test_valid_trajectory_passes():
    assert validate(openai_record()) == []


def test_every_rule_has_a_failing_case():
    assert {code for code, _, _ in CASES.values()} == set(RULES)


@pytest.mark.parametrize("name", CASES)
def test_each_rule_fails_alone(name):
    code, index, change = CASES[name]
    record = openai_record()
    change(record)
    found = validate(record)
    assert [(v.code, v.message_index) for v in found] == [(code, index)], [v.line() for v in found]
    assert found[0].rule == RULES[code].name


def test_grounding_is_a_warning_and_can_be_switched_off():
    record = openai_record()
    set_args(2, {"patient_id": "P-999"})(record)
    assert errors(validate(record)) == []
    assert validate(record, grounding=False) == []


@pytest.mark.parametrize("value", ["p-100", "  P-100 "])
def test_grounding_normalises_case_and_space(value):
    record = openai_record()
    set_args(2, {"patient_id": value})(record)
    assert validate(record) == []


def test_grounding_matches_numbers_numerically_and_free_text_by_overlap():
    record = openai_record()
    record["messages"][1]["content"] = "I'm patient P-100; the bill was 1,200.50 EUR and the knee scan was painful."
    record["tools"][2]["function"]["parameters"]["properties"]["note"] = {"type": "string"}
    set_args(6, {"visit_id": "V-7", "amount": 1200.5, "note": "the knee scan was very painful"})(record)
    assert validate(record) == []
    set_args(6, {"visit_id": "V-7", "amount": 1300, "note": "a completely different invented story here"})(record)
    assert [v.code for v in validate(record)] == ["G001", "G001"]


def test_assistant_tool_call_with_empty_content_is_valid():
    record = openai_record()
    assert record["messages"][2]["content"] is None and record["messages"][2]["tool_calls"]
    record["messages"][2]["content"] = ""
    assert validate(record) == []


def test_non_object_record_and_missing_messages():
    assert [v.code for v in validate([1, 2])] == ["M001"]
    assert [v.code for v in validate({"tools": []})] == ["M001"]


@pytest.mark.parametrize("name", ["password", "new_pin", "cvv", "securityAnswer", "card_number", "pin",
                                  "credit_card_number"])
def test_tools_never_take_secrets(name):
    record = openai_record()
    record["tools"].append(tool(name="verify_user", parameters={"type": "object", "properties": {name: {"type": "string"}}}))
    assert [v.code for v in validate(record)] == ["T007"]


@pytest.mark.parametrize("name", ["pinned", "spinner_id", "card_last_four", "shipping_option",
                                  "library_card_number", "health_card_number"])
def test_names_that_only_look_like_secrets_pass(name):
    record = openai_record()
    record["tools"].append(tool(name="lookup", parameters={"type": "object", "properties": {name: {"type": "string"}}}))
    assert validate(record) == []


def _grounding_codes(user_text, args, system=None):
    record = openai_record()
    record["messages"][1]["content"] = user_text
    if system is not None:
        record["messages"][0]["content"] = system
    props = record["tools"][2]["function"]["parameters"]["properties"]
    props.update({"visit_date": {"type": "string"}, "patient_name": {"type": "string"}})
    set_args(6, {"visit_id": "V-7", **args})(record)
    return [v.code for v in validate(record)]


@pytest.mark.parametrize("user_text, args, system", [
    # a date said in words, written as ISO 8601 (GEM's grounding rule, signatures/conventions.py)
    ("I'm P-100, the visit on March 3rd cost 80 EUR.", {"amount": 80, "visit_date": "2026-03-03"}, None),
    ("I'm P-100, the visit on 3 March cost 80 EUR.", {"amount": 80, "visit_date": "2026-03-03"}, None),
    # a weekday relative to the current date the system prompt gives (2026-11-30 is a Monday)
    ("I'm P-100, my visit last... no, this Friday, 80 EUR.", {"amount": 80, "visit_date": "2026-12-04"},
     "You are a claims assistant. Today is 2026-11-30."),
    # a number in words; a sum of two grounded amounts
    ("I'm P-100, it was eighty... no, two scans of 40 and 45 EUR.", {"amount": 85}, None),
    # a name in another order and case
    ("I'm P-100, Anna Smith, 80 EUR.", {"amount": 80, "patient_name": "smith anna"}, None),
    # a code said in groups, a national phone number written with its country code
    ("I'm P-100, card 2900 0417 3312, 80 EUR.", {"amount": 80, "patient_name": "290004173312"}, None),
    ("I'm P-100, mobile 0157 7392 0418, 80 EUR.", {"amount": 80, "patient_name": "+4915773920418"}, None),
    # a date a stated duration after a date said in words
    ("I'm P-100, 80 EUR; I fly on 20 April for two weeks.", {"amount": 80, "visit_date": "2026-05-04"},
     "You are a claims assistant. Today is 2026-03-10."),
])
def test_grounding_accepts_the_normalisations_the_rule_allows(user_text, args, system):
    assert _grounding_codes(user_text, args, system) == []


@pytest.mark.parametrize("user_text, args", [
    ("I'm P-100, the visit on March 3rd cost 80 EUR.", {"amount": 80, "visit_date": "2026-03-04"}),
    ("I'm P-100, 80 EUR.", {"amount": 80, "visit_date": "2026-12-04"}),  # no date, no current date
    ("I'm P-100, Anna Smith, 80 EUR.", {"amount": 80, "patient_name": "Anna Jones"}),
    ("I'm P-100, two scans of 40 and 45 EUR.", {"amount": 97}),
])
def test_grounding_still_flags_invented_values(user_text, args):
    assert _grounding_codes(user_text, args) == ["G001"]


CASES_DIR = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "cases" / "datasets"


def _case(name):
    text = (CASES_DIR / name).read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()] if name.endswith(".jsonl") else [json.loads(text)]


@pytest.mark.skipif(not CASES_DIR.is_dir(), reason="../shared/cases is beside the project on development machines")
@pytest.mark.parametrize("name, gem_codes", [
    ("08-assistant-text-with-tool-call.json", ["O001"]),
    ("09-parallel-results-out-of-order.json", ["O001"]),
    ("11-nullable-parameter-types.json", ["O001"]),
])
def test_field_cases_pass_the_openai_rules_and_only_gem_conventions_flag_them(name, gem_codes):
    for record in _case(name):
        assert validate(record, rules="openai") == []
        assert [v.code for v in validate(record, rules="gem", grounding=False)] == gem_codes


@pytest.mark.skipif(not CASES_DIR.is_dir(), reason="../shared/cases is beside the project on development machines")
def test_arguments_given_as_objects_are_normalised_with_a_named_warning():
    for record in _case("01-arguments-as-object.jsonl"):
        found = validate(record, rules="openai")
        assert [(v.code, v.severity, v.message_index) for v in found] == [("C007", "warning", 1)]


@pytest.mark.skipif(not CASES_DIR.is_dir(), reason="../shared/cases is beside the project on development machines")
def test_arrow_null_padding_is_named_per_tool_and_never_crashes():
    found = validate(_case("10-arrow-null-padded-tool-schema.json")[0], rules="openai")
    assert [v.code for v in found] == ["T004", "T004"]
    assert "`lookup_order`" in found[0].reason and "properties.email" in found[0].reason
    assert "Arrow/Parquet null padding" in found[0].reason and "`resend_invoice`" in found[1].reason


def test_public_style_records_without_a_system_turn_pass_the_openai_rules():
    record = openai_record()
    record["messages"].pop(0)  # BFCL / xLAM / Glaive style: no system turn
    record["tools"].append(tool(name="no_params"))  # a tool without parameters
    record["tools"][0]["function"]["parameters"]["properties"]["since"] = {
        "anyOf": [{"type": "string"}, {"type": "null"}], "default": None}
    record["tools"][0]["function"]["parameters"]["$defs"] = {"when": {"type": "string"}}
    record["messages"][1]["tool_calls"][0]["function"]["arguments"] = json.dumps({"patient_id": "P-100", "since": None})
    assert validate(record, rules="openai") == []
    assert [v.code for v in validate(record, rules="gem")] == ["O001"]


def test_an_unknown_rule_set_is_refused():
    with pytest.raises(ValueError, match="unknown rule set"):
        validate(openai_record(), rules="strict")
