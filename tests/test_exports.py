"""Exports checked by their consumers' own code: jsonschema, real chat templates, TRL.

The data is a real `gem-synth run` dataset (scripted answers over HTTP) with two domains,
integer and enum arguments and one turn of parallel calls. The chat templates and the
Qwen2 tokenizer vocabulary come from the llama-cpp-python sdist (pip's cache), the
training template from TRL itself.
"""

import json
from pathlib import Path

import datasets
import pytest
from jsonschema import Draft202012Validator

from gem_synth.cli.main import main
from gem_synth.running.exports import canonical, for_template, hermes_calls, write_export
from gem_synth.signatures import RelevanceFilter, TrajectoryGeneration, WorkflowExtraction
from tests.fake_openai import FakeOpenAIServer
from tests.fixtures import CONVERSATION, PROCEDURE, TOOL_SPECS, WORKFLOWS, handlers
from tests.scripted import ScriptedEngine, http_responder

ORDER_TOOLS = [
    {"name": "list_orders", "description": "List a customer's recent orders.", "kind": "read", "parameters": [
        {"name": "customer_email", "type": "string", "description": "Email.", "required": True},
        {"name": "limit", "type": "integer", "description": "At most this many.", "required": False}]},
    {"name": "get_order", "description": "Look up one order.", "kind": "read", "parameters": [
        {"name": "order_id", "type": "string", "description": "Order id.", "required": True}]},
    {"name": "cancel_order", "description": "Cancel an order.", "kind": "write", "parameters": [
        {"name": "order_id", "type": "string", "description": "Order id.", "required": True},
        {"name": "reason", "type": "string", "description": "Why.", "required": True,
         "enum": ["changed_mind", "too_late", "other"]}]},
]


def call(cid, name, args):
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


# What the pipeline writes for the orders text: rounds, one call per step (signatures/conversation.py).
ORDER_CONVERSATION = {
    "system": "You are a store assistant. Cancel only orders not yet shipped.",
    "rounds": [
        {"user": "I'm ann@example.com; show my last 2 orders and details of A-1 and A-2.",
         "steps": [
             {"call": {"name": "list_orders", "arguments": {"customer_email": "ann@example.com", "limit": 2}},
              "result": json.dumps({"orders": ["A-1", "A-2"]})},
             {"call": {"name": "get_order", "arguments": {"order_id": "A-1"}},
              "result": json.dumps({"order_id": "A-1", "status": "shipped"})},
             {"call": {"name": "get_order", "arguments": {"order_id": "A-2"}},
              "result": json.dumps({"order_id": "A-2", "status": "paid"})}],
         "reply": "A-1 has shipped; A-2 is paid. Cancel A-2?"},
        {"user": "Yes, cancel A-2, I changed my mind.",
         "steps": [{"call": {"name": "cancel_order", "arguments": {"order_id": "A-2", "reason": "changed_mind"}},
                    "result": json.dumps({"order_id": "A-2", "status": "cancelled"})}],
         "reply": "A-2 is cancelled."},
    ],
}

# The same conversation as another tool wrote it, with one turn of parallel calls: imported OpenAI data,
# which `gem-synth export` reads as well as a run folder.


ORDER_TURNS = [
    {"role": "system", "content": "You are a store assistant. Cancel only orders not yet shipped."},
    {"role": "user", "content": "I'm ann@example.com; show my last 2 orders and details of A-1 and A-2."},
    {"role": "assistant", "content": "", "tool_calls": [call("c1", "list_orders",
                                                             {"customer_email": "ann@example.com", "limit": 2})]},
    {"role": "tool", "tool_call_id": "c1", "content": json.dumps({"orders": ["A-1", "A-2"]})},
    {"role": "assistant", "content": "", "tool_calls": [call("c2", "get_order", {"order_id": "A-1"}),
                                                        call("c3", "get_order", {"order_id": "A-2"})]},
    {"role": "tool", "tool_call_id": "c2", "content": json.dumps({"order_id": "A-1", "status": "shipped"})},
    {"role": "tool", "tool_call_id": "c3", "content": json.dumps({"order_id": "A-2", "status": "paid"})},
    {"role": "assistant", "content": "A-1 has shipped; A-2 is paid. Cancel A-2?"},
    {"role": "user", "content": "Yes, cancel A-2, I changed my mind."},
    {"role": "assistant", "content": "", "tool_calls": [call("c4", "cancel_order",
                                                             {"order_id": "A-2", "reason": "changed_mind"})]},
    {"role": "tool", "tool_call_id": "c4", "content": json.dumps({"order_id": "A-2", "status": "cancelled"})},
    {"role": "assistant", "content": "A-2 is cancelled."},
]
ORDERS = "To cancel an order, open Orders, pick the order and press Cancel before it ships."

TEMPLATES = {  # template file -> the argument/id/call form it needs
    "Qwen-Qwen2.5-7B-Instruct.jinja": {"arguments": "dict"},
    "Qwen-Qwen3-0.6B.jinja": {"empty_content": True},
    "meta-llama-Llama-3.1-8B-Instruct.jinja": {"arguments": "dict", "split_parallel": True},
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja": {},
    "mistralai-Mistral-Nemo-Instruct-2407.jinja": {"arguments": "dict", "ids": "mistral"},
}


def _answers():
    def extract(i):
        orders = "Orders" in i["text"]
        return {"workflows": WORKFLOWS, "tools": ORDER_TOOLS if orders else TOOL_SPECS}

    def generate(i):
        return {"trajectory": ORDER_CONVERSATION if "Orders" in i["text"] else CONVERSATION, "patterns_used": []}

    def filter_(i):
        return {"is_procedural": True, "summary": "s", "domain": "d", "platform": "p", "task_category": "other"}

    return handlers({RelevanceFilter: filter_, WorkflowExtraction: extract, TrajectoryGeneration: generate})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")
    corpus = root / "corpus"
    corpus.mkdir()
    (corpus / "claims.md").write_text(PROCEDURE)
    (corpus / "orders.md").write_text(ORDERS)
    (corpus / "claims2.md").write_text(PROCEDURE + " For dental visits too.")
    with FakeOpenAIServer(http_responder(ScriptedEngine(_answers()))) as server:
        code = main(["run", str(corpus), "--out", str(root / "run"), "--stages", "filter,extract,generate,validate",
                     "--lm", "hosted_vllm/scripted", "--api-base", server.url, "--no-progress", "--no-track",
                     "--cache-dir", str(root / "cache"), "--export", "openai", "--export", "sharegpt",
                     "--near-duplicates", "0"])  # three variants of one procedure, on purpose
    assert code == 0
    return root / "run"


def parallel_record() -> dict:
    from gem_synth.signatures.drafts import ToolSpec

    return {"tools": [ToolSpec(**t).to_tool().to_openai() for t in ORDER_TOOLS], "messages": ORDER_TURNS}


@pytest.fixture(scope="module")
def records(run_dir):
    """The run's three records, then the imported one with parallel calls."""
    rows = datasets.load_from_disk(str(run_dir / "trajectories"))
    assert rows.num_rows == 3
    return [canonical(r) for r in rows] + [parallel_record()]


def _orders(records):
    return next(r for r in records if r["tools"][0]["function"]["name"] == "list_orders")


def _claims(records):
    return next(r for r in records if r["tools"][0]["function"]["name"] == "list_visits")


def _calls(record):
    return [c for m in record["messages"] for c in m.get("tool_calls") or []]


def test_every_argument_validates_against_its_tool_schema(records):
    for record in records:
        schemas = {t["function"]["name"]: t["function"]["parameters"] for t in record["tools"]}
        for schema in schemas.values():
            Draft202012Validator.check_schema(schema)
        for c in _calls(record):
            Draft202012Validator(schemas[c["function"]["name"]]).validate(json.loads(c["function"]["arguments"]))


def test_schema_violating_argument_is_caught(records):
    bad = json.loads(json.dumps(_orders(records)))
    target = next(c for c in _calls(bad) if c["function"]["name"] == "cancel_order")
    target["function"]["arguments"] = json.dumps({"order_id": "A-2", "reason": "bored"})
    schema = next(t for t in bad["tools"] if t["function"]["name"] == "cancel_order")["function"]["parameters"]
    assert not Draft202012Validator(schema).is_valid(json.loads(target["function"]["arguments"]))
    report = write_export([{"id": "bad", **bad}], "openai", Path("/tmp/never.jsonl"))
    assert report.written == 0 and "C004" in report.left_out[0]


def test_dangling_tool_call_is_not_exported(records, tmp_path):
    bad = json.loads(json.dumps(_claims(records)))
    bad["messages"].pop(3)  # the answer to the first call
    report = write_export([{"id": "dangling", **bad}, {"id": "ok", **_claims(records)}], "hermes",
                                     tmp_path / "h.jsonl")
    assert report.written == 1 and report.left_out[0].startswith("dangling: R001")


def _render(template: str, record: dict, tokenizer_tokens=True) -> str:
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template(conversations=[record["messages"]], tools=record["tools"],
                                        chat_template=template, bos_token="<s>", eos_token="</s>",
                                        add_generation_prompt=False)
    return rendered[0]


def _args_forms(arguments: str) -> list[str]:
    value = json.loads(arguments)
    return [arguments, json.dumps(value), json.dumps(value, separators=(",", ":")),
            json.dumps(value, ensure_ascii=False)]


@pytest.mark.parametrize("template_name", list(TEMPLATES))
def test_every_trajectory_renders_through_real_chat_templates(records, sdist, template_name):
    template = (sdist / template_name).read_text()
    for record in records:
        shaped = for_template(record, **TEMPLATES[template_name])
        text = _render(template, shaped)
        position = 0
        for c in _calls(record):
            name = c["function"]["name"]
            forms = [f for f in _args_forms(c["function"]["arguments"]) if f in text]
            assert forms, f"{template_name}: arguments of {name} not rendered"
            found = text.find(forms[0], position)
            assert found >= 0, f"{template_name}: {name} out of order"
            assert text.count(forms[0]) == 1, f"{template_name}: {name} arguments rendered twice"
            assert name in text[max(0, found - 300):found], f"{template_name}: {name} not next to its arguments"
            position = found + len(forms[0])
        assert shaped["messages"][-1]["content"] in text


def test_mistral_ids_are_nine_alphanumerics_and_still_pair(records):
    shaped = for_template(_orders(records), ids="mistral")
    ids = [c["id"] for c in _calls(shaped)]
    assert all(len(i) == 9 and i.isalnum() for i in ids)
    assert [m["tool_call_id"] for m in shaped["messages"] if m["role"] == "tool"] == ids
    split = for_template(parallel_record(), split_parallel=True)
    assert all(len(m.get("tool_calls") or []) <= 1 for m in split["messages"])
    assert [m["role"] for m in split["messages"]][4:8] == ["assistant", "tool", "assistant", "tool"]


def test_hermes_export_reads_back_as_the_same_calls(run_dir, records, tmp_path):
    assert main(["export", "--format", "hermes", str(run_dir), str(tmp_path / "hermes.jsonl")]) == 0
    exported = [json.loads(line) for line in (tmp_path / "hermes.jsonl").read_text().splitlines()]
    assert len(exported) == 3
    for row, record in zip(exported, records):
        calls = [c for m in row["messages"] if m["role"] == "assistant" for c in hermes_calls(m["content"])]
        assert calls == [{"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])}
                         for c in _calls(record)]
        assert "<tools>" in row["messages"][0]["content"]
        assert all(m["content"].startswith("<tool_response>") for m in row["messages"] if m["role"] == "tool")


def test_sharegpt_export_alternates(run_dir):
    rows = datasets.load_from_disk(str(run_dir / "exports" / "sharegpt"))
    orders = next(r for r in rows if "list_orders" in r["tools"])
    roles = [t["from"] for t in orders["conversations"]]
    assert roles == ["human", *["function_call", "observation"] * 3, "gpt", "human", "function_call", "observation",
                     "gpt"]
    assert orders["system"].startswith("You are a store assistant")


def test_sharegpt_export_groups_parallel_results_of_imported_data(tmp_path):
    source = tmp_path / "imported.jsonl"
    source.write_text(json.dumps(parallel_record()) + "\n")
    assert main(["export", "--format", "sharegpt", str(source), str(tmp_path / "sharegpt")]) == 0
    orders = datasets.load_from_disk(str(tmp_path / "sharegpt"))[0]
    roles = [t["from"] for t in orders["conversations"]]
    assert roles == ["human", "function_call", "observation", "function_call", "observation", "gpt", "human",
                     "function_call", "observation", "gpt"]
    assert len(json.loads(orders["conversations"][3]["value"])) == 2  # the parallel calls
    assert len(json.loads(orders["conversations"][4]["value"])) == 2  # and their two results
    assert orders["system"].startswith("You are a store assistant")


def test_gem_sft_export(run_dir, tmp_path):
    from gem_synth.running.exports import parse_sft_answer

    assert main(["export", "--format", "gem-sft", str(run_dir), str(tmp_path / "sft")]) == 0
    rows = datasets.load_from_disk(str(tmp_path / "sft"))
    assert rows.num_rows == 3
    answer = parse_sft_answer(rows[0]["messages"][2]["content"])
    assert answer["is_procedural"] is True and answer["messages"][0]["role"] == "system"


def test_trl_trains_one_step_with_the_assistant_only_mask(run_dir, sdist, tmp_path):
    import torch
    import trl
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(str(sdist), gguf_file="ggml-vocab-qwen2.gguf")
    tokenizer.chat_template = (Path(trl.__file__).parent / "chat_templates" / "qwen3_training.jinja").read_text()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1))
    train = datasets.load_from_disk(str(run_dir / "exports" / "openai"))
    trainer = SFTTrainer(model=model, processing_class=tokenizer, train_dataset=train.select_columns(
        ["messages", "tools"]), args=SFTConfig(output_dir=str(tmp_path / "out"), max_steps=1,
                                                per_device_train_batch_size=1, assistant_only_loss=True,
                                                use_cpu=True, report_to=[], max_length=4096, save_strategy="no"))
    result = trainer.train()
    assert result.global_step == 1 and result.training_loss > 0
    orders = next(r for r in trainer.train_dataset if "list_orders" in tokenizer.decode(r["input_ids"]))
    # TRL 1.16 applies the assistant-only mask as labels (-100 where no loss is taken).
    learned = tokenizer.decode([t for t, label in zip(orders["input_ids"], orders["labels"]) if label != -100])
    for name in ("list_orders", "get_order", "cancel_order"):
        assert name in learned  # tool calls are trained on
    assert "A-2 is cancelled." in learned
    assert "I changed my mind" not in learned  # user turns are not
    assert '"status": "cancelled"' not in learned  # nor tool results


def test_finetune_entry_trains_a_synthesizer_on_gem_sft_chats(run_dir, sdist, tmp_path):
    """`gem-synth finetune --backend trl` on the gem-sft export, with a tiny model on the CPU."""
    import trl
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(sdist), gguf_file="ggml-vocab-qwen2.gguf")
    tokenizer.chat_template = (Path(trl.__file__).parent / "chat_templates" / "qwen3_training.jinja").read_text()
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    base = tmp_path / "tiny-base"
    Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=1)).save_pretrained(base)
    tokenizer.save_pretrained(base)
    assert main(["export", "--format", "gem-sft", str(run_dir), str(tmp_path / "sft")]) == 0
    assert main(["finetune", "--data", str(tmp_path / "sft"), "--base-model", str(base), "--backend", "trl",
                 "--out", str(tmp_path / "tuned"), "--max-steps", "1", "--allow-cpu"]) == 0
    assert (tmp_path / "tuned" / "config.json").is_file()
    assert list((tmp_path / "tuned").glob("*.safetensors"))
