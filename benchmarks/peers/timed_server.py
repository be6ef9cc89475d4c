"""The stage server (benchmarks/stage_server.py), plus what bench_peers needs to compare clients:
when the first request of the workload arrived and when its last answer went out, and a
digest of the chat messages received, so every client is checked to have sent the same prompts.

A workload request is one the stage server answers as the filter stage; anything else a
client sends (a rate-limit probe, a health check) is counted apart. GET /times reports:
`calls`, `other`, `first` and `last` (time.time() of the first arrival and the last answer),
`digest` (sha256 over the sorted crc32 of each request's messages) and `bodies` (the
distinct non-message keys of the request bodies, with one sample value each).
A message whose content is a list of text parts (valid OpenAI input, which the stage
server does not read) is joined into one string first.

    python -m benchmarks.peers.timed_server [--latency 0.5] [--log FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
import time
import zlib

from benchmarks.stage_server import StageServer, serve_until_stopped


class TimedStageServer(StageServer):
    def __init__(self, *args, log: str | None = None, **kwargs):
        self.times = {"calls": 0, "other": 0, "first": None, "last": None}
        self.crcs: list[int] = []
        self.keys: dict[str, str] = {}
        self.log = open(log, "w") if log else None
        self._tlock = threading.Lock()
        super().__init__(*args, **kwargs)

    def _handler(self):
        base = super()._handler()
        server = self

        class Timed(base):
            def do_GET(self):
                if self.path.rstrip("/").endswith("/times"):
                    with server._tlock:
                        out = dict(server.times)
                        out["digest"] = hashlib.sha256(json.dumps(sorted(server.crcs)).encode()).hexdigest()[:16]
                        out["bodies"] = dict(server.keys)
                    return self._send(200, out)
                return super().do_GET()

            def _serve(self, body):
                arrived = time.time()
                messages = body.get("messages") or []
                for m in messages:  # content as a list of text parts (Data Designer sends that): one string
                    if isinstance(m.get("content"), list):
                        m["content"] = "".join(p.get("text", "") for p in m["content"] if isinstance(p, dict))
                system = next((m.get("content", "") for m in messages if m.get("role") == "system"), "")
                workload = "`is_procedural`" in str(system)
                try:
                    return super()._serve(body)
                finally:
                    done = time.time()
                    with server._tlock:
                        if workload:
                            t = server.times
                            t["calls"] += 1
                            t["first"] = arrived if t["first"] is None else min(t["first"], arrived)
                            t["last"] = done if t["last"] is None else max(t["last"], done)
                            server.crcs.append(zlib.crc32(json.dumps(messages, sort_keys=True).encode()))
                            for k, v in body.items():
                                if k != "messages" and k not in server.keys:
                                    server.keys[k] = json.dumps(v)[:80]
                        else:
                            server.times["other"] += 1
                        if server.log:
                            server.log.write(json.dumps(body) + "\n")
                            server.log.flush()

        return Timed


def main() -> None:
    parser = argparse.ArgumentParser(description="stage server with workload timing (127.0.0.1 only)")
    parser.add_argument("--latency", default="0")
    parser.add_argument("--log", help="append every request body to this JSONL file")
    args = parser.parse_args()
    serve_until_stopped(TimedStageServer(args.latency, log=args.log))


if __name__ == "__main__":
    main()
