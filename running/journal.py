"""An append-only, crash-safe log of finished segments: what makes a run resumable.

One JSON object per line, flushed and fsynced in small batches. A run killed mid-write
leaves at most a torn last line, which `Journal.open` cuts off; every complete line is
a finished segment that a rerun skips. A later line for the same id supersedes an
earlier one (a segment retried after a transient LM error).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class Journal:
    def __init__(self, path: Path, fh, sync_every: int = 16, sync_seconds: float = 1.0):
        self.path = path
        self._fh = fh
        self._pending = 0
        self._last_sync = time.monotonic()
        self.sync_every = sync_every
        self.sync_seconds = sync_seconds

    @classmethod
    def open(cls, path: Path, **kwargs) -> "Journal":
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            _cut_torn_tail(path)
        return cls(path, path.open("ab"), **kwargs)

    def append(self, entry: dict[str, Any]) -> None:
        self._fh.write(json.dumps(entry, ensure_ascii=False).encode() + b"\n")
        self._pending += 1
        if self._pending >= self.sync_every or time.monotonic() - self._last_sync >= self.sync_seconds:
            self.sync()

    def sync(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._pending = 0
        self._last_sync = time.monotonic()

    def close(self) -> None:
        self.sync()
        self._fh.close()


def _cut_torn_tail(path: Path) -> None:
    """Drop a last line without its newline: the write a kill interrupted."""
    with path.open("rb+") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        back = min(size, 1 << 20)
        while True:
            fh.seek(size - back)
            chunk = fh.read(back)
            cut = chunk.rfind(b"\n")
            if cut >= 0 or back == size:
                fh.truncate(size - back + cut + 1 if cut >= 0 else 0)
                return
            back = min(size, back * 2)


def read_entries(path: Path) -> Iterator[dict[str, Any]]:
    """Every complete entry, in order; a torn last line is ignored."""
    if not path.exists():
        return
    with path.open("rb") as fh:
        for line in fh:
            if not line.endswith(b"\n"):
                return
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def latest_by_id(path: Path) -> dict[str, int]:
    """id -> line number of its latest entry, so final tables keep one row per segment."""
    latest: dict[str, int] = {}
    for number, entry in enumerate(read_entries(path)):
        latest[entry["id"]] = number
    return latest
