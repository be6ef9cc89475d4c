"""NeMo Data Designer's side of bench_peers: a seed dataset of the prompts (one row per call:
`system`, `user`) and one `LLMTextColumnConfig` whose system prompt and prompt are those
columns, against a `ModelProvider(provider_type="openai")` at the stage server, with
`max_parallel_requests` = CONCURRENCY (Data Designer's AIMD admission stays under it).

    /tmp/peers-dd/bin/python benchmarks/peers/data_designer_client.py PROMPTS URL CONCURRENCY WORKDIR

Prints `RESULT {json}` like gem_synth_client.
"""

import time

T_START = time.time()

import json  # noqa: E402
import sys  # noqa: E402


def main() -> None:
    prompts, url, concurrency, workdir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    with open(prompts) as fh:
        meta = json.loads(fh.readline())
        rows = [json.loads(line)["messages"] for line in fh]

    import pandas as pd

    import data_designer.config as dd
    from data_designer.interface import DataDesigner

    seed = pd.DataFrame({"system": [m[0]["content"] for m in rows], "user": [m[1]["content"] for m in rows]})
    provider = dd.ModelProvider(name="stage", endpoint=url, provider_type="openai", api_key="bench")
    model = dd.ModelConfig(alias="bench", model=meta["model"], provider="stage",
                           inference_parameters=dd.ChatCompletionInferenceParams(
                               max_parallel_requests=concurrency, timeout=120,
                               extra_body={"response_format": meta["response_format"]}))
    builder = dd.DataDesignerConfigBuilder(model_configs=[model])
    builder.with_seed_dataset(dd.DataFrameSeedSource(df=seed))
    builder.add_column(dd.LLMTextColumnConfig(name="answer", model_alias="bench", system_prompt="{{ system }}",
                                              prompt="{{ user }}"))
    designer = DataDesigner(artifact_path=workdir, model_providers=[provider])
    designer.set_run_config(dd.RunConfig(otel_metrics_port=None))
    t_calls_start = time.time()
    result = designer.create(builder, num_records=len(rows))
    t_calls_end = time.time()
    df = result.load_dataset()
    answered = int(df["answer"].notna().sum())
    print("RESULT " + json.dumps({"t_start": T_START, "t_calls_start": t_calls_start, "t_calls_end": t_calls_end,
                                  "answered": answered}), flush=True)


if __name__ == "__main__":
    main()
