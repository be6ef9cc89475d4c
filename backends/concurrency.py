"""Adaptive concurrency: as many LM calls in flight as the endpoint answers, never a storm of retries.

A fixed `--workers` is either too slow for an endpoint or faster than its rate limit, and
then every call beyond the limit comes back 429 and is retried, which is itself load.
`AdaptiveLimit` keeps TCP's answer to the same problem for one endpoint:
- additive increase: each call that succeeds while the limit is in use raises it by
  1/limit, so a full window of successes raises it by one call;
- multiplicative decrease: a call refused as overload (429, 503, a timeout) cuts it to
  3/4 (TCP CUBIC's factor: a gentler sawtooth keeps more of the capacity in use than
  halving), once per congestion event (calls that started before the last decrease do not
  cut it again);
- `Retry-After`: the refused call is sent again after it (programs/pipeline.call_stage);
  other calls go on at the lower limit. Only when the limit is already down to one call
  does a Retry-After hold every new call back (the endpoint refuses even one: it is a rate
  limit in time, not in concurrency).
The limit starts at a quarter of the ceiling (at least two calls; TCP, too, went from one
segment to ten, RFC 6928) and, until the first overload, grows by one per success (TCP's
slow start: it doubles every round trip), so a run four times wider than its endpoint does
not open with a burst of refusals, and a run at 64 is at full width after two round trips
(starting from two, the ramp cost a fifth of a 1,000-call run: benchmarks/README.md §9). The ceiling is the run's `--workers`,
which also bounds the segments in flight; the floor is one call.

`AdaptiveConcurrency` holds every LM call to its endpoint's limit (endpoint = model string
and api_base): the run's adapter (`programs/adapter.GEMJSONAdapter(gate=...)`) takes a slot
around each call, so it covers every stage and the synthesizer alike; the run loop retries a
stage whose call was refused (`programs/pipeline.call_stage`), after the limit has paused and
shrunk. It was a DSPy callback until the peers benchmark showed what that costs: any callback
makes DSPy wrap every module, adapter and LM call (argument binding, a uuid each), 11% of the
client's CPU per call (benchmarks/README.md, section 9).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from dspy.utils.exceptions import AdapterParseError, LMRateLimitError, LMServerError, LMTimeoutError

OVERLOAD_STATUS = (429, 502, 503, 504, 529)


def _answered(exc: BaseException) -> bool:
    """The endpoint answered; the answer did not parse (the adapter's error, not the endpoint's)."""
    return isinstance(exc, AdapterParseError)


def is_overload(exc: BaseException | None) -> bool:
    """True for what says "slow down": a rate limit, a timeout, 502/503/504/529 (a 500 is a fault, not load)."""
    if isinstance(exc, (LMRateLimitError, LMTimeoutError)):
        return True
    return isinstance(exc, LMServerError) and getattr(exc, "status", None) in OVERLOAD_STATUS


class AdaptiveLimit:
    """AIMD limit on in-flight calls to one endpoint (see the module docstring).

    `acquire()` blocks until a call may start and returns its start time; `release(started,
    outcome, retry_after)` reports how it ended: "ok", "overload" or "error" (an error that
    says nothing about load leaves the limit alone). `retry_after` is in seconds.
    """

    def __init__(self, ceiling: int, decrease: float = 0.75, start: int = 2,
                 clock: Callable[[], float] = time.monotonic):
        if ceiling < 1:
            raise ValueError("the ceiling of in-flight calls must be at least 1")
        self.ceiling = ceiling
        self.decrease = decrease
        self.clock = clock
        self.limit = float(min(start, ceiling))
        self.slow_start = True  # until the first overload
        self.peak = 0  # most calls in flight since the last decrease: is the limit in use?
        self.in_flight = 0
        self.paused_until = 0.0
        self.last_decrease = float("-inf")
        self.successes = self.overloads = self.errors = 0
        self.lowest = float(ceiling)
        self._cond = threading.Condition()

    def __deepcopy__(self, memo: dict) -> "AdaptiveLimit":
        return self  # one endpoint, one limit: a copied LM or program shares it

    def acquire(self) -> float:
        with self._cond:
            while True:
                now = self.clock()
                if now < self.paused_until:
                    self._cond.wait(self.paused_until - now)
                elif self.in_flight < max(1, int(self.limit)):
                    self.in_flight += 1
                    self.peak = max(self.peak, self.in_flight)
                    return now
                else:
                    self._cond.wait(1.0)

    def release(self, started: float, outcome: str, retry_after: float | None = None) -> None:
        with self._cond:
            self.in_flight -= 1
            now = self.clock()
            if outcome == "ok":
                self.successes += 1
                if self.slow_start or self.peak >= int(self.limit):  # grow a limit in use, or it drifts up idle
                    step = 1.0 if self.slow_start else 1.0 / max(1.0, self.limit)
                    self.limit = min(float(self.ceiling), self.limit + step)
            elif outcome == "overload":
                self.overloads += 1
                self.slow_start = False
                if started >= self.last_decrease:  # one decrease per congestion event
                    self.limit = max(1.0, self.limit * self.decrease)
                    self.last_decrease = now
                    self.peak = self.in_flight
                    self.lowest = min(self.lowest, self.limit)
                if retry_after and self.limit <= 1.0:
                    self.paused_until = max(self.paused_until, now + min(float(retry_after), 60.0))
            else:
                self.errors += 1
            self._cond.notify_all()

    def snapshot(self) -> dict[str, Any]:
        with self._cond:
            return {"limit": round(self.limit, 2), "lowest": round(self.lowest, 2), "in_flight": self.in_flight,
                    "successes": self.successes, "overloads": self.overloads, "errors": self.errors}


class AdaptiveConcurrency:
    """Every LM call held to its endpoint's `AdaptiveLimit` (ceiling: in-flight calls).

    `held(lm)` is the slot: it waits for room, and on leaving tells the limit how the call
    went (a success or an answer that did not parse: "ok"; 429/503/timeout: "overload",
    with its Retry-After; anything else: "error").
    """

    def __init__(self, ceiling: int):
        self.ceiling = ceiling
        self.limits: dict[tuple[str, str], AdaptiveLimit] = {}
        self._lock = threading.Lock()

    def limit_for(self, lm: Any) -> AdaptiveLimit:
        key = (str(getattr(lm, "model", "")), str((getattr(lm, "kwargs", None) or {}).get("api_base") or ""))
        with self._lock:
            if key not in self.limits:
                self.limits[key] = AdaptiveLimit(self.ceiling, start=max(2, self.ceiling // 4))
            return self.limits[key]

    @contextmanager
    def held(self, lm: Any) -> Iterator[None]:
        limit = self.limit_for(lm)
        started = limit.acquire()
        try:
            yield
        except BaseException as exc:
            if is_overload(exc):
                limit.release(started, "overload", getattr(exc, "retry_after", None))
            elif _answered(exc):
                limit.release(started, "ok")
            else:
                limit.release(started, "error")
            raise
        limit.release(started, "ok")

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {" ".join(filter(None, key)): limit.snapshot() for key, limit in self.limits.items()}
