"""Property-based: any record, however mutated, gets a verdict from `validate` and from every export.

Records start from a valid trajectory and are mutated at random the ways real data goes
wrong (types swapped, keys dropped, nulls inserted, strings where objects belong, lists
where strings belong...). Whatever comes out, `validate` returns findings (never raises),
and every export either writes the record or leaves it out with a reason.
"""

import copy
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gem_synth.running.exports import FORMATS, export_rows, for_template
from gem_synth.programs.validator import RULES, validate
from tests.fixtures import openai_record

JUNK = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=8),
                 st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                 st.just({"type": "object"}), st.just("{not json"), st.just([{"role": "user"}]))


def _paths(value, path=()):
    yield path
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*path, i))


ACTIONS = ("replace", "drop", "null", "stringify", "arguments_object")
# What to do, drawn up front: (where, as a fraction of the record's paths; what; with which junk value).
# Draws never depend on the record as mutated so far, so hypothesis can replay and shrink every case.
MUTATIONS = st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.sampled_from(ACTIONS), JUNK),
                     min_size=1, max_size=4)


def _mutate(record, mutations):
    record = copy.deepcopy(record)
    for where, action, junk in mutations:
        paths = [p for p in _paths(record) if p]
        if not paths:
            break
        path = paths[int(where * len(paths))]
        parent = record
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        if action == "drop":
            del parent[key]
        elif action == "null":
            parent[key] = None
        elif action == "stringify":
            parent[key] = json.dumps(parent[key]) if not isinstance(parent[key], str) else {"text": parent[key]}
        elif action == "arguments_object" and isinstance(parent[key], str) and key == "arguments":
            try:
                parent[key] = json.loads(parent[key])
            except json.JSONDecodeError:
                parent[key] = {}
        else:
            parent[key] = copy.deepcopy(junk)
    return record


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(MUTATIONS)
def test_any_mutated_record_gets_a_verdict(mutations):
    record = _mutate(openai_record(), mutations)
    for rules in ("openai", "gem"):
        for v in validate(record, rules=rules):
            assert v.code in RULES and v.reason
    for fmt in FORMATS:
        for exported, reason, warnings in export_rows([{"id": "r", "text": "t", **record}
                                                       if isinstance(record, dict) else record], fmt, "I"):
            assert (reason is None) == ("id" in exported and len(exported) > 1)
            if reason is None:
                json.dumps(exported)  # what is written is JSON


@settings(max_examples=100, deadline=None)
@given(st.one_of(JUNK, st.lists(JUNK, max_size=3)))
def test_anything_at_all_gets_a_verdict(value):
    assert validate(value)  # not a record: findings, not an exception
    assert all(reason for _, reason, _ in export_rows([value], "openai"))


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_template_forms_of_valid_records_never_raise(data):
    record = openai_record()
    form = dict(arguments=data.draw(st.sampled_from(["string", "dict"])),
                ids=data.draw(st.sampled_from(["keep", "mistral"])),
                split_parallel=data.draw(st.booleans()), empty_content=data.draw(st.booleans()))
    shaped = for_template(record, **form)
    assert len([m for m in shaped["messages"] if m["role"] == "tool"]) == 2
