"""Adaptive concurrency (issue 17): AIMD below --workers, Retry-After honoured, no segment lost."""

import json
import threading

import datasets
import pytest
from dspy.utils.exceptions import LMRateLimitError, LMServerError

from benchmarks.stage_server import StageServer
from gem_synth.cli.main import main
from gem_synth.backends.concurrency import AdaptiveConcurrency, AdaptiveLimit, is_overload


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_additive_increase_multiplicative_decrease_once_per_congestion_event():
    clock = Clock()
    limit = AdaptiveLimit(8, clock=clock)
    assert limit.limit == 2  # slow start: two calls, then one more per success until the first overload
    for _ in range(3):
        busy = [limit.acquire() for _ in range(int(limit.limit))]
        for started in busy:
            limit.release(started, "ok")
    assert limit.limit == 8  # 2 -> 4 -> 8 (the ceiling): doubling per round trip
    starts = [limit.acquire() for _ in range(8)]
    clock.now += 1
    limit.release(starts[0], "overload")  # the first refusal cuts the limit to 3/4
    assert limit.limit == 6
    for s in starts[1:4]:  # calls that started before that cut do not cut it again
        limit.release(s, "overload")
    assert limit.limit == 6 and limit.overloads == 4
    later = [limit.acquire() for _ in range(2)]  # 4 in flight, 6 allowed
    clock.now += 1
    limit.release(later[0], "overload")
    assert limit.limit == 4.5 and limit.lowest == 4.5
    limit.release(later[1], "error")  # a fault that says nothing about load leaves it alone
    assert limit.limit == 4.5
    for s in starts[4:]:
        limit.release(s, "ok")  # a limit in use grows by about one call per window
    assert limit.in_flight == 0 and limit.limit == pytest.approx(4.5 + 4 / 4.5, abs=0.1)  # 4 were in flight: in use
    before = limit.limit
    clock.now += 1
    limit.release(limit.acquire(), "overload")  # a new congestion event: the peak restarts from here
    for _ in range(3):
        limit.release(limit.acquire(), "ok")  # one call at a time on a limit of 4: not in use, no growth
    assert limit.limit == pytest.approx(before * 0.75)


def test_the_floor_is_one_call_and_retry_after_holds_calls_back_there():
    clock = Clock()
    limit = AdaptiveLimit(2, clock=clock)
    assert limit.limit == 2
    started = limit.acquire()
    clock.now += 1
    limit.release(started, "overload", retry_after=2)
    assert limit.limit == 1.5 and limit.paused_until == 0  # above one call, only the refused call waits
    while limit.limit > 1.0:
        started = limit.acquire()
        clock.now += 1
        limit.release(started, "overload", retry_after=2)
    assert limit.limit == 1.0 and limit.paused_until == clock.now + 2
    got = []
    waiter = threading.Thread(target=lambda: got.append(limit.acquire()))
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive() and not got  # held back until Retry-After has passed
    clock.now += 2.5
    with limit._cond:
        limit._cond.notify_all()
    waiter.join(5)
    assert got


def test_what_counts_as_overload():
    assert is_overload(LMRateLimitError("slow down", status=429, retry_after=1.0))
    assert is_overload(LMServerError("unavailable", status=503))
    assert not is_overload(LMServerError("bug", status=500))
    assert not is_overload(ValueError("x")) and not is_overload(None)


def test_limits_are_per_endpoint_and_shared_by_copies():
    import copy

    class LM:
        def __init__(self, model, base):
            self.model, self.kwargs = model, {"api_base": base}

    gate = AdaptiveConcurrency(4)
    a, b = gate.limit_for(LM("hosted_vllm/m", "http://a")), gate.limit_for(LM("hosted_vllm/m", "http://b"))
    assert a is not b and gate.limit_for(LM("hosted_vllm/m", "http://a")) is a
    assert copy.deepcopy(a) is a


def _run(tmp_path, fixed: bool) -> tuple[int, int, dict]:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": f"To return item {i}, sign in, open Orders and choose Return. "
                                                  "Print the label and drop the parcel within 30 days."}) + "\n"
                              for i in range(8)))
    out = tmp_path / ("fixed" if fixed else "adaptive")
    with StageServer(latency=0.05, capacity=2, retry_after=0.2) as server:
        code = main(["run", str(corpus), "--out", str(out), "--lm", "hosted_vllm/bench", "--api-base", server.url,
                     "--workers", "8", "--num-retries", "6", "--no-track", "--no-progress", "--near-duplicates", "0",
                     "--cache-dir", str(out / "cache"), *(["--fixed-concurrency"] if fixed else [])])
        refused = server.stats.refused
    assert code == 0
    accepted = datasets.load_from_disk(str(out / "trajectories")).num_rows
    assert accepted + datasets.load_from_disk(str(out / "rejects")).num_rows == 8  # every segment accounted for
    return accepted, refused, json.loads((out / "sessions.jsonl").read_text().splitlines()[-1])


def test_a_run_four_times_wider_than_the_endpoint_loses_nothing_and_storms_less(tmp_path):
    """An endpoint that serves 2 calls at once and refuses the rest with 429 + Retry-After; 8 workers.
    Adaptive: every segment accepted, the limit came down, and far fewer calls were refused than with
    8 calls kept in flight (each refusal is load the endpoint must turn away)."""
    accepted, refused, session = _run(tmp_path, fixed=False)
    assert accepted == 8 and refused > 0
    [limit] = session["concurrency"].values()
    assert limit["lowest"] < 8 and limit["overloads"] == refused
    _, refused_fixed, session_fixed = _run(tmp_path, fixed=True)
    assert "concurrency" not in session_fixed
    # Refusals were 1.27x to 1.55x fewer over six runs here: too close to assert a ratio without
    # flaking (bench_adaptive measures it at scale: 47 against 141); fewer, always.
    assert refused_fixed > refused, (refused, refused_fixed)
