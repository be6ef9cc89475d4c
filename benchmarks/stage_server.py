"""An OpenAI-compatible chat-completions server that answers every GEM stage, for
benchmarks and fault tests only. It listens on 127.0.0.1 and is started by the code
that uses it (in a thread, or as `python -m benchmarks.stage_server` in a process).

Answers are realistic and valid: eight tools, two workflows, a 37-turn generated and a
49-turn refined conversation that pass the rule validator, and passing verdicts. Each
call waits a configurable latency (fixed, or drawn from a distribution) and may fail on
purpose: HTTP 500, 429 with Retry-After, a hung request, a truncated body, malformed
JSON in the content, or no choices at all. It counts what it did.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULTS = ("500", "429", "hang", "truncate", "malformed", "empty")

TOOLS = [
    {"name": "find_customer", "description": "Find a customer by email.", "kind": "read", "parameters": [
        {"name": "email", "type": "string", "description": "Customer email.", "required": True}]},
    {"name": "list_orders", "description": "List a customer's orders.", "kind": "read", "parameters": [
        {"name": "customer_id", "type": "string", "description": "Customer id.", "required": True},
        {"name": "limit", "type": "integer", "description": "At most this many.", "required": False}]},
    {"name": "get_order", "description": "Look up one order.", "kind": "read", "parameters": [
        {"name": "order_id", "type": "string", "description": "Order id.", "required": True}]},
    {"name": "get_return_policy", "description": "Read the return rules for a product category.", "kind": "read",
     "parameters": [{"name": "category", "type": "string", "description": "Category.", "required": True,
                     "enum": ["clothing", "electronics", "home"]}]},
    {"name": "check_return_eligibility", "description": "Check whether an item can be returned.", "kind": "read",
     "parameters": [{"name": "order_id", "type": "string", "description": "Order id.", "required": True},
                    {"name": "item_id", "type": "string", "description": "Item id.", "required": True}]},
    {"name": "create_return", "description": "Open a return for an item.", "kind": "write", "parameters": [
        {"name": "order_id", "type": "string", "description": "Order id.", "required": True},
        {"name": "item_id", "type": "string", "description": "Item id.", "required": True},
        {"name": "reason", "type": "string", "description": "Why.", "required": True,
         "enum": ["damaged", "wrong_size", "changed_mind"]}]},
    {"name": "schedule_pickup", "description": "Book a courier pickup for a return.", "kind": "write",
     "parameters": [{"name": "return_id", "type": "string", "description": "Return id.", "required": True},
                    {"name": "date", "type": "string", "description": "ISO 8601 date.", "required": True}]},
    {"name": "get_refund_status", "description": "Status of a return's refund.", "kind": "read", "parameters": [
        {"name": "return_id", "type": "string", "description": "Return id.", "required": True}]},
]

WORKFLOWS = [
    {"name": "return_item", "goal": "Return an item for a refund.", "steps": [
        {"name": "identify", "description": "Find the customer.", "tools": ["find_customer"], "depends_on": []},
        {"name": "find_order", "description": "Find the order.", "tools": ["list_orders", "get_order"],
         "depends_on": ["identify"]},
        {"name": "check", "description": "Check eligibility.", "tools": ["check_return_eligibility",
                                                                          "get_return_policy"],
         "depends_on": ["find_order"]},
        {"name": "open_return", "description": "Open the return.", "tools": ["create_return"],
         "depends_on": ["check"]},
        {"name": "pickup", "description": "Book the pickup.", "tools": ["schedule_pickup"],
         "depends_on": ["open_return"]}],
     "branches": [{"at_step": "check", "condition": "item not eligible", "then": {"kind": "refuse", "name": ""}, "otherwise": None}],
     "constraints": [{"kind": "deadline", "description": "Returns within 30 days of delivery."}]},
    {"name": "track_refund", "goal": "Know when the refund arrives.", "steps": [
        {"name": "status", "description": "Read the refund status.", "tools": ["get_refund_status"],
         "depends_on": []}], "branches": [], "constraints": []},
]

PATTERNS = ["clarification", "rule_awareness", "multi_hop_reasoning", "error_recovery"]


def conversation(rounds: int, seed: int = 0) -> dict[str, Any]:
    """A valid conversation in rounds (signatures/conversation.py): per round a request, two grounded
    tool calls and an answer."""
    out: dict[str, Any] = {"system": (
        "You are the returns assistant of an online store. Database: customers(customer_id, email), "
        "orders(order_id, customer_id, items), returns(return_id, order_id, item_id, status). Rules: 1. Returns "
        "within 30 days of delivery. 2. Confirm before creating a return or booking a pickup. 3. One open return "
        "per item. Persona: a busy customer who writes briefly."), "rounds": []}
    for r in range(rounds):
        order, item = f"O-{seed}{r:03d}", f"I-{seed}{r:03d}"
        out["rounds"].append({
            "user": f"Is item {item} of order {order} still returnable? It arrived damaged.",
            "steps": [
                {"call": {"name": "get_order", "arguments": {"order_id": order}},
                 "result": json.dumps({"order_id": order, "delivered": "2026-11-10", "items": [item, f"X-{r}"],
                                       "status": "delivered"})},
                {"call": {"name": "check_return_eligibility", "arguments": {"order_id": order, "item_id": item}},
                 "result": json.dumps({"eligible": True, "deadline": "2026-12-10", "open_returns": 0})},
            ],
            "reply": f"Yes: {item} can be returned until 2026-12-10. Shall I open a return for it as damaged?"})
    return out


def answer_for(system: str, user: str) -> dict[str, Any] | str:
    """The answer to one call; conversations differ per text, as a real model's would, so
    no two segments share a judge request (and a cache entry)."""
    case = zlib.crc32(user.encode()) % 100_000
    listed = system.split("Your output fields are:", 1)[-1].split("All interactions", 1)[0]
    names = set(re.findall(r"^\d+\. `(\w+)`", listed, re.M))
    if "is_procedural" in names and "trajectory" in names:  # the synthesizer
        return {"is_procedural": True, "tools": TOOLS, "trajectory": conversation(8, case), "patterns_used": PATTERNS}
    if "is_procedural" in names:
        return {"is_procedural": "NOT PROCEDURAL" not in user, "summary": "Returning an item for a refund.",
                "domain": "online retail returns", "platform": "store website", "task_category":
                "ecommerce_and_retail"}
    if "workflows" in names:
        return {"workflows": WORKFLOWS, "tools": TOOLS}
    if "new_tools" in names:
        return {"new_tools": []}
    if "refined_trajectory" in names:
        return {"refined_trajectory": conversation(8, case),
                "patterns_used": ["long_noisy_context", "multi_constraint_turn", "pitfall"]}
    if "trajectory" in names:
        return {"trajectory": conversation(6, case), "patterns_used": PATTERNS}
    if "tool_call_hallucination" in names:
        ok = {"passed": True, "offending_messages": [], "reason": "Every value is grounded."}
        return {"tool_call_hallucination": ok, "capability_hallucination": ok, "context_hallucination": ok,
                "patterns_exercised": []}
    return "OK"


def _latency_fn(spec: str | float, rng: random.Random):
    """`0.5`, `uniform:0.2,0.8`, `normal:0.5,0.1` or `exp:0.5` (seconds)."""
    if isinstance(spec, (int, float)):
        return lambda: float(spec)
    kind, _, args = str(spec).partition(":")
    if not args:
        return lambda: float(kind)
    a = [float(x) for x in args.split(",")]
    if kind == "uniform":
        return lambda: rng.uniform(a[0], a[1])
    if kind == "normal":
        return lambda: max(0.0, rng.gauss(a[0], a[1]))
    if kind == "exp":
        return lambda: rng.expovariate(1 / a[0])
    raise ValueError(f"unknown latency {spec!r}")


@dataclass
class Stats:
    requests: int = 0
    faults: Counter = field(default_factory=Counter)
    busy_seconds: float = 0.0
    in_flight: int = 0
    max_in_flight: int = 0
    admitted: int = 0  # requests answered within capacity
    refused: int = 0  # requests over capacity, answered 429
    stages: Counter = field(default_factory=Counter)


class StageServer:
    def __init__(self, latency: str | float = 0.0, faults: dict[str, float] | None = None, seed: int = 0,
                 hang_seconds: float = 30.0, port: int = 0, capacity: int | None = None, retry_after: float = 1.0):
        """`capacity`: at most this many requests in service at once; one more is answered 429 at once,
        with `Retry-After: retry_after` (a rate-limited provider, for the adaptive-concurrency benchmark)."""
        self.capacity = capacity
        self.retry_after = retry_after
        self._serving = 0
        self.rng = random.Random(seed)
        self.latency = _latency_fn(latency, self.rng)
        self.faults = {k: v for k, v in (faults or {}).items() if v}
        unknown = set(self.faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown fault(s) {sorted(unknown)}; choose from {FAULTS}")
        self.hang_seconds = hang_seconds
        self.stats = Stats()
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def _draw(self) -> tuple[str | None, float]:
        with self._lock:
            roll, delay = self.rng.random(), self.latency()
        for fault, rate in self.faults.items():
            if roll < rate:
                return fault, delay
            roll -= rate
        return None, delay

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms ACK stalls

            def log_message(self, *args):
                pass

            def handle(self):
                try:
                    super().handle()
                except (ConnectionResetError, BrokenPipeError):
                    pass  # a client killed mid-request (the resume benchmark does that on purpose)

            def _send(self, status: int, payload: dict, headers: dict | None = None, cut: bool = False):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data[: len(data) // 2] if cut else data)
                if cut:
                    self.close_connection = True

            def do_GET(self):  # /stats: what the server did, for benchmarks in another process
                st = server.stats
                self._send(200, {"requests": st.requests, "faults": dict(st.faults), "busy_seconds": st.busy_seconds,
                                 "max_in_flight": st.max_in_flight, "admitted": st.admitted, "refused": st.refused,
                                 "stages": dict(st.stages)})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if server.capacity is not None:
                    with server._lock:
                        full = server._serving >= server.capacity
                        server.stats.requests += full
                        server.stats.refused += full
                        server._serving += not full
                    if full:
                        return self._send(429, {"error": {"message": "over capacity", "type": "rate_limit"}},
                                          {"Retry-After": f"{server.retry_after:g}"})
                    try:
                        return self._serve(body)
                    finally:
                        with server._lock:
                            server._serving -= 1
                            server.stats.admitted += 1
                return self._serve(body)

            def _serve(self, body):
                fault, delay = server._draw()
                with server._lock:
                    server.stats.requests += 1
                    server.stats.in_flight += 1
                    server.stats.max_in_flight = max(server.stats.max_in_flight, server.stats.in_flight)
                    if fault:
                        server.stats.faults[fault] += 1
                started = time.perf_counter()
                try:
                    time.sleep(server.hang_seconds if fault == "hang" else delay)
                    messages = body.get("messages", [])
                    system = next((m["content"] for m in messages if m["role"] == "system"), "")
                    answer = answer_for(system, messages[-1]["content"] if messages else "")
                    with server._lock:
                        server.stats.stages[next(iter(answer)) if isinstance(answer, dict) else "probe"] += 1
                    content = answer if isinstance(answer, str) else json.dumps(answer)
                    if fault == "500":
                        return self._send(500, {"error": {"message": "internal error", "type": "server_error"}})
                    if fault == "429":
                        return self._send(429, {"error": {"message": "rate limited", "type": "rate_limit"}},
                                          {"Retry-After": "1"})
                    if fault == "malformed":
                        content = content[: len(content) // 3]
                    choices = [] if fault == "empty" else [{"index": 0, "finish_reason": "stop", "message": {
                        "role": "assistant", "content": content}}]
                    usage = {"prompt_tokens": sum(len(str(m.get("content", "")).split()) for m in messages),
                             "completion_tokens": len(content.split())}
                    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
                    self._send(200, {"id": "bench", "object": "chat.completion", "created": 0,
                                     "model": body.get("model", "bench"), "choices": choices, "usage": usage},
                               cut=fault == "truncate")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a hung request it timed out)
                finally:
                    with server._lock:
                        server.stats.in_flight -= 1
                        server.stats.busy_seconds += time.perf_counter() - started

        return Handler

    def __enter__(self) -> "StageServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description="GEM stage server for benchmarks (127.0.0.1 only)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", default="0")
    parser.add_argument("--fault", action="append", default=[], help="NAME=RATE, e.g. 500=0.1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--capacity", type=int, help="requests served at once; more are answered 429")
    parser.add_argument("--retry-after", type=float, default=1.0, help="Retry-After of an over-capacity 429 (s)")
    args = parser.parse_args()
    faults = {k: float(v) for k, v in (f.split("=") for f in args.fault)}
    serve_until_stopped(StageServer(args.latency, faults, args.seed, port=args.port, capacity=args.capacity,
                                    retry_after=args.retry_after))


def serve_until_stopped(server: StageServer) -> None:
    """Print the server's URL (the first line its parent reads), then serve until killed or Ctrl-C."""
    with server:
        print(server.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
