"""Turn a relay queue into the committed strong-model recording (tests/recordings/).

How the fixtures are made (see README, "Recorded answers"):

    python ../shared/tools/relay/relay_server.py --port 8931 --queue /tmp/relay-q --wait 7200 &
    # helpers answer the queue, following ../shared/tools/relay/HELPER-BRIEF.md
    .venv/bin/gem-synth run examples/corpus --out runs/relay-pipeline --lm hosted_vllm/relay \
        --api-base http://127.0.0.1:8931/v1 --timeout 7200 --num-retries 0 --workers 8 --no-track
    .venv/bin/gem-synth run examples/corpus --out runs/relay-synth --program synthesizer --lm hosted_vllm/relay \
        --api-base http://127.0.0.1:8931/v1 --timeout 7200 --num-retries 0 --workers 8 --no-track
    .venv/bin/python scripts/record_strong_model.py /tmp/relay-q tests/recordings/strong-model.jsonl

Recorded again on 2026-11-30 in the shapes of issue 16 (conversations in rounds, refinement
as extend + rewrite): both runs above at once (pipeline --workers 5, synthesizer
--workers 4), eight helpers answering, 129 requests in about 14 minutes. A text recorded
again alone (a corpus file read differently) takes the same commands on a folder holding
only that file, with the old judge answers for it left out by --drop-requests.

Every request of a gem-synth stage in the queue becomes one recorded answer, keyed by
stage and input (backends/replay.py). The meta line names the model as what it is: a
strong-model stand-in, capable models answering through the relay.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gem_synth.running.corpus import read_corpus  # noqa: E402
from gem_synth.backends.replay import recording_rows_from_relay, text_key  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("queue", type=Path, help="the relay's queue folder (req-N.json, resp-N.txt)")
    parser.add_argument("out", type=Path, help="the recording to write (JSONL)")
    parser.add_argument("--corpus", default="examples/corpus",
                        help="answers for a text no longer in this corpus (e.g. read differently now) are left out")
    parser.add_argument("--drop-requests", default="", help="comma list of request numbers to leave out: judge "
                                                            "answers for conversations of texts recorded again")
    args = parser.parse_args()
    current = {text_key(s.text) for s in read_corpus(args.corpus) if hasattr(s, "text")}
    dropped = {int(n) for n in args.drop_requests.split(",") if n.strip()}
    rows = [r for r in recording_rows_from_relay(args.queue) if r["request"] not in dropped
            and (r["signature"] == "HallucinationJudge" or r["key"] in current)]
    if not rows:
        print(f"no gem-synth requests with answers in {args.queue}", file=sys.stderr)
        return 1
    meta = {
        "model": "strong-model stand-in: capable helper models answering as the LM through the relay "
                 "(../shared/tools/relay, HELPER-BRIEF.md); not a named provider model",
        "recorded": dt.date.today().isoformat(),
        "corpus": args.corpus,
        "usage": "approximate, characters / 4, as the relay reports it",
        "answers": dict(Counter(r["stage"] for r in rows)),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as fh:
        fh.write(json.dumps({"meta": meta}, ensure_ascii=False) + "\n")
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(rows)} answers -> {args.out}: {meta['answers']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
