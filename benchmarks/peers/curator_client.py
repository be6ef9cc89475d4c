"""bespokelabs-curator's side of bench_peers: a `curator.LLM` over the prompts, backend
`openai` pointed at the stage server, caching off, at most CONCURRENCY requests in flight
(request and token rate limits set far above what the run can reach).

    /tmp/peers/bin/python benchmarks/peers/curator_client.py PROMPTS URL CONCURRENCY WORKDIR

PROMPTS: the JSONL of bench_peers (line 1: {"model", "response_format"}, then one
{"messages"} per call). Prints `RESULT {json}` like gem_synth_client.
"""

import time

T_START = time.time()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402


def main() -> None:
    prompts, url, concurrency, workdir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    os.environ["CURATOR_CACHE_DIR"] = workdir
    os.environ["CURATOR_DISABLE_CACHE"] = "1"  # a fresh run hash: every row goes to the server
    os.environ["CURATOR_DISABLE_RICH_DISPLAY"] = "1"
    os.environ["TELEMETRY_ENABLED"] = "false"
    # Curator counts tokens with tiktoken's cl100k_base, which it would download; LiteLLM ships that file.
    import importlib.util

    litellm_dir = os.path.dirname(importlib.util.find_spec("litellm").origin)
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", os.path.join(litellm_dir, "litellm_core_utils", "tokenizers"))
    with open(prompts) as fh:
        meta = json.loads(fh.readline())
        rows = [json.loads(line) for line in fh]

    from bespokelabs import curator

    class Chat(curator.LLM):
        def prompt(self, row):
            return row["messages"]

    llm = Chat(model_name=meta["model"], backend="openai",
               generation_params={"response_format": meta["response_format"]},
               backend_params={"base_url": url, "api_key": "bench", "max_concurrent_requests": concurrency,
                               "max_requests_per_minute": 10**9, "max_tokens_per_minute": 10**12,
                               "max_retries": 3, "request_timeout": 120, "require_all_responses": True})
    t_calls_start = time.time()
    result = llm(rows, working_dir=workdir)
    t_calls_end = time.time()
    dataset = result.dataset
    answered = sum(1 for r in dataset["response"] if r)
    print("RESULT " + json.dumps({"t_start": T_START, "t_calls_start": t_calls_start, "t_calls_end": t_calls_end,
                                  "answered": answered}), flush=True)


if __name__ == "__main__":
    main()
