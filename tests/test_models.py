"""The provider path against a real HTTP server on 127.0.0.1, and model configuration."""

import json
import socket

import dspy
import pytest

from gem_synth.programs.adapter import GEMJSONAdapter
from gem_synth.backends.models import (
    ModelError,
    ModelSpec,
    build_lm,
    check_lm,
    configure_cache,
    plan_models,
    route,
)
from gem_synth.signatures import RelevanceFilter
from tests.fake_openai import FakeOpenAIServer, completion

FILTER_ANSWER = json.dumps({"is_procedural": True, "summary": "s", "domain": "d", "platform": "p",
                            "task_category": "other"})


def answer(body):
    return 200, completion(FILTER_ANSWER, body["model"])


def predict(lm):
    with dspy.context(lm=lm, adapter=GEMJSONAdapter()):
        return dspy.Predict(RelevanceFilter)(text="File a claim in three steps.")


def test_request_carries_model_max_tokens_and_key_from_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    with FakeOpenAIServer(answer, api_key="sk-from-env") as server:
        out = predict(build_lm(ModelSpec(model="openai/my-model", api_base=server.url, max_tokens=321), cache=False))
    assert out.is_procedural is True
    [req] = server.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["body"]["model"] == "my-model"
    assert req["body"]["max_tokens"] == 321 and "max_completion_tokens" not in req["body"]
    assert req["headers"]["Authorization"] == "Bearer sk-from-env"


def test_openai_prefix_at_custom_endpoint_routes_the_max_tokens_way():
    assert route(ModelSpec(model="openai/llama", api_base="http://x/v1")) == "gem-endpoint/llama"
    assert route(ModelSpec(model="hosted_vllm/llama", api_base="http://x/v1")) == "gem-endpoint/llama"
    assert route(ModelSpec(model="openai/gpt-4.1")) == "openai/gpt-4.1"
    assert route(ModelSpec(model="openai/o3-mini", api_base="http://x/v1")) == "openai/o3-mini"


def test_server_error_is_retried():
    calls = []

    def flaky(body):
        calls.append(1)
        return (500, {"error": {"message": "boom"}}) if len(calls) == 1 else answer(body)

    with FakeOpenAIServer(flaky) as server:
        out = predict(build_lm(ModelSpec(model="hosted_vllm/m", api_base=server.url, num_retries=2), cache=False))
    assert out.summary == "s" and len(server.requests) == 2


def test_wrong_key_fails_fast_in_one_line():
    with FakeOpenAIServer(answer, api_key="right") as server:
        with pytest.raises(ModelError) as err:
            check_lm(ModelSpec(model="hosted_vllm/m", api_base=server.url, api_key="wrong"))
    assert "rejected the API key" in str(err.value) and "\n" not in str(err.value)
    assert len(server.requests) == 1  # no retries of an auth failure


def test_refused_connection_fails_fast_in_one_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    with pytest.raises(ModelError) as err:
        check_lm(ModelSpec(model="hosted_vllm/m", api_base=f"http://127.0.0.1:{port}/v1"))
    assert str(err.value).startswith("cannot reach hosted_vllm/m at http://127.0.0.1:")


def test_missing_key_fails_before_any_call(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ModelError, match="openai/gpt-4.1 needs OPENAI_API_KEY"):
        check_lm(ModelSpec(model="openai/gpt-4.1"))


def test_unknown_model_fails_fast():
    def not_found(body):
        return 404, {"error": {"message": f"The model `{body['model']}` does not exist", "code": "model_not_found"}}

    with FakeOpenAIServer(not_found) as server:
        with pytest.raises(ModelError, match="was not found"):
            check_lm(ModelSpec(model="hosted_vllm/nope", api_base=server.url))


def test_cache_key_includes_the_endpoint_but_not_the_key(tmp_path):
    configure_cache(str(tmp_path / "cache"))
    with FakeOpenAIServer(answer) as a, FakeOpenAIServer(answer) as b:
        predict(build_lm(ModelSpec(model="hosted_vllm/m", api_base=a.url, api_key="k1")))
        predict(build_lm(ModelSpec(model="hosted_vllm/m", api_base=b.url, api_key="k1")))
        predict(build_lm(ModelSpec(model="hosted_vllm/m", api_base=a.url, api_key="k2")))
    assert (len(a.requests), len(b.requests)) == (1, 1)


def test_plan_merges_cli_over_environment_over_config():
    config = {"lm": {"model": "openai/gpt-4.1", "temperature": 0.7, "judge": {"model": "anthropic/claude-x"}}}
    env = {"GEM_SYNTH_LM": "openai/gpt-4.1-mini", "GEM_SYNTH_API_KEY": "secret"}
    plan = plan_models({"max_tokens": 9000, "filter_lm": "openai/gpt-4.1-nano"}, config, env)
    assert plan.default.model == "openai/gpt-4.1-mini" and plan.default.temperature == 0.7
    assert plan.default.max_tokens == 9000
    assert plan.for_stage("judge").model == "anthropic/claude-x"
    assert plan.for_stage("filter").model == "openai/gpt-4.1-nano"
    assert plan.for_stage("generate") == plan.default
    assert "secret" not in json.dumps(plan.public())


def test_plan_defaults_to_the_embedded_model_and_rejects_unknown_settings():
    assert plan_models({}, {}, {}).default.is_local
    with pytest.raises(ModelError, match="unknown \\[lm\\] setting"):
        plan_models({}, {"lm": {"modle": "x"}}, {})


def test_the_disk_cache_is_used_from_one_thread_and_survives_a_new_process_view(tmp_path):
    """Writes queued to the cache's own thread are on disk after flush(); a second cache over the
    same folder lists them (a hit, from any thread) and answers an unknown key at once."""
    import threading
    from hashlib import sha256

    from diskcache import FanoutCache

    from gem_synth.backends.models import OneThreadDisk

    def key(i):  # DSPy's keys are sha256 digests
        return sha256(str(i).encode()).hexdigest()

    disk = OneThreadDisk(FanoutCache(directory=str(tmp_path), shards=4))
    threads = [threading.Thread(target=disk.set, args=(key(i), {"answer": i})) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    disk.flush()
    assert disk.get(key(7)) == {"answer": 7}
    again = OneThreadDisk(FanoutCache(directory=str(tmp_path), shards=4))
    again.flush()  # the listing of what is on disk is done before this returns
    assert again._known is not None and len(again._known) == 20
    found = []
    reader = threading.Thread(target=lambda: found.append(again.get(key(19))))
    reader.start()
    reader.join()
    assert found == [{"answer": 19}]
    assert again.get("f" * 64, "missing") == "missing" and "f" * 64 not in again
    again.set("f" * 64, 1)
    again.flush()
    assert FanoutCache(directory=str(tmp_path), shards=4).get("f" * 64) == 1
