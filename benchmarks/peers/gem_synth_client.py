"""gem-synth's side of bench_peers: the run loop, filter stage only, over a corpus whose every
segment the stage server rejects (one LM call per segment).

    .venv/bin/python -m benchmarks.peers.gem_synth_client CORPUS OUT URL CONCURRENCY [--fixed]

Prints one line `RESULT {json}` with time.time() stamps: `t_start` (interpreter up, before
the heavy imports), `t_calls_start` / `t_calls_end` (around `runner.run`), and `answered`
(segments that came back filtered out, i.e. whose answer was parsed).
"""

from __future__ import annotations

import time

T_START = time.time()

import argparse  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("corpus")
    parser.add_argument("out")
    parser.add_argument("url")
    parser.add_argument("concurrency", type=int)
    parser.add_argument("--fixed", action="store_true", help="fixed concurrency: no adaptive (AIMD) limit")
    args = parser.parse_args()

    from benchmarks.common import plan, run_config
    from gem_synth.running.runner import run

    cfg = run_config(Path(args.corpus), Path(args.out), args.concurrency, stages="filter", adaptive=not args.fixed)
    models = plan(args.url)
    t_calls_start = time.time()
    summary = run(cfg, models)
    t_calls_end = time.time()
    print("RESULT " + json.dumps({"t_start": T_START, "t_calls_start": t_calls_start, "t_calls_end": t_calls_end,
                                  "answered": summary.outcomes.get("filtered_out", 0),
                                  "outcomes": dict(summary.outcomes)}), flush=True)


if __name__ == "__main__":
    main()
