"""distilabel's side of bench_peers: a pipeline `LoadDataFromDicts >> ChatGeneration` whose LLM is
`OpenAILLM(base_url=the stage server)`, cache off. An async LLM sends a whole input batch at
once (asyncio.gather), so `input_batch_size` = CONCURRENCY puts that many calls in flight;
one replica of the step, so that is the ceiling.

    /tmp/peers/bin/python benchmarks/peers/distilabel_client.py PROMPTS URL CONCURRENCY WORKDIR

Prints `RESULT {json}` like gem_synth_client.
"""

import time

T_START = time.time()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402


def main() -> None:
    prompts, url, concurrency, workdir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    os.environ["DISTILABEL_CACHE_DIR"] = workdir
    with open(prompts) as fh:
        meta = json.loads(fh.readline())
        rows = [json.loads(line) for line in fh]

    from distilabel.models import OpenAILLM
    from distilabel.pipeline import Pipeline
    from distilabel.steps import LoadDataFromDicts
    from distilabel.steps.tasks import ChatGeneration

    with Pipeline(name="bench-peers") as pipeline:
        load = LoadDataFromDicts(data=rows, batch_size=concurrency)
        # `response_format` in extra_body: agenerate's own argument is typed Dict[str, str], too narrow for a schema
        llm = OpenAILLM(model=meta["model"], base_url=url, api_key="bench", max_retries=3, timeout=120,
                        generation_kwargs={"extra_body": {"response_format": meta["response_format"]}})
        chat = ChatGeneration(llm=llm, input_batch_size=concurrency)
        load >> chat
    t_calls_start = time.time()
    distiset = pipeline.run(use_cache=False)
    t_calls_end = time.time()
    answered = sum(1 for r in distiset["default"]["train"]["generation"] if r)
    print("RESULT " + json.dumps({"t_start": T_START, "t_calls_start": t_calls_start, "t_calls_end": t_calls_end,
                                  "answered": answered}), flush=True)


if __name__ == "__main__":
    main()
