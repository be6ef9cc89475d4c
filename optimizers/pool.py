"""DSPy's thread pools, without straggler resubmission: no LM call is ever paid twice.

Every DSPy evaluator and optimizer runs examples through `dspy.utils.parallelizer.
ParallelExecutor`, which resubmits an example still running after `timeout` seconds
(120 by default, and `dspy.Evaluate` offers no way to change it) without stopping the
first thread. With GEM's calls (a refinement takes minutes on a strong model) every slow
example was paid twice, and the process lingered after finishing until the abandoned
call returned (a 3/2 filter compile on the embedded model: 3.5 of 10.7 minutes after
"saved"). `never_resubmit()` turns the straggler timeout off for everything DSPy runs
inside it; `gem-synth run` already uses a pool of its own that never resubmits.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from dspy.utils.parallelizer import ParallelExecutor

_lock = threading.Lock()
_depth = 0
_original_init = ParallelExecutor.__init__


def _init_without_stragglers(self, *args, **kwargs) -> None:
    _original_init(self, *args, **kwargs)
    self.timeout = 0  # ParallelExecutor resubmits only when 0 < timeout


@contextmanager
def never_resubmit() -> Iterator[None]:
    """Within this block, no DSPy pool resubmits a running example (re-entrant, process-wide)."""
    global _depth
    with _lock:
        _depth += 1
        ParallelExecutor.__init__ = _init_without_stragglers
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                ParallelExecutor.__init__ = _original_init
