"""Progress of a run that knows its end: segments done of the total, outcomes, tokens, ETA.

The total is counted by reading the corpus once without any LM work (local files, JSONL
and saved datasets are cheap to read next to a single LM call), within a time budget: a
corpus too large to count in it, or a Hub dataset streamed, gets no total. In a terminal
the bar is tqdm's; in a log (stderr not a terminal: CI, nohup, a scheduler) one line a
minute instead of a bar redrawn in place.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any


def count(items: Iterable[Any], budget_seconds: float = 5.0) -> int | None:
    """How many items `items` yields, or None if counting takes longer than the budget."""
    started = time.monotonic()
    n = 0
    for n, _ in enumerate(items, start=1):
        if n % 256 == 0 and time.monotonic() - started > budget_seconds:
            return None
    return n


class Progress:
    """`update(outcome, tokens)` once per finished segment; `close()` at the end."""

    def __init__(self, total: int | None, done: int = 0, stream=None, interval: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        self.total, self.done, self.clock, self.interval = total, done, clock, interval
        self.stream = stream or sys.stderr
        self.counts: Counter[str] = Counter()
        self.tokens = 0
        self.started = clock()
        self.this_run = 0
        self.last_line = self.started
        self.bar = None
        if self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, unit="seg", desc="gem-synth", dynamic_ncols=True,
                            file=self.stream)

    def status(self) -> str:
        outcomes = " ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
        return f"{outcomes} tokens={self.tokens}"

    def eta(self) -> str:
        if self.total is None or not self.this_run:
            return "?"
        rate = (self.clock() - self.started) / self.this_run
        seconds = max(0.0, (self.total - self.done) * rate)
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"

    def line(self) -> str:
        of = f"/{self.total}" if self.total is not None else ""
        return f"gem-synth: {self.done}{of} segments, {self.status()}, ETA {self.eta()}"

    def update(self, outcome: str, tokens: int = 0) -> None:
        self.done += 1
        self.this_run += 1
        self.counts[outcome] += 1
        self.tokens += tokens
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(self.status(), refresh=False)
        elif self.clock() - self.last_line >= self.interval:
            self.last_line = self.clock()
            print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.this_run:
            print(self.line(), file=self.stream, flush=True)
