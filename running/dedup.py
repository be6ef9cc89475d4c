"""Near-duplicates by MinHash LSH (datasketch): found before any LM call, and measured in the output.

Web and help-centre corpora repeat themselves: boilerplate, mirrored pages, a paragraph
with one word changed. Each near-copy would cost the whole pipeline (about five long
calls) and yield a near-copy trajectory. `NearDuplicateIndex` keeps a MinHash signature of
every segment's word shingles in an LSH index; a segment whose estimated Jaccard
similarity with an earlier one reaches the threshold is a near-duplicate of it.

Chosen: `datasketch` (maintained, pure Python + numpy, the reference MinHash LSH) over
our own hashing. Shingles are 3-word windows of the casefolded text, so reordered
boilerplate and one-word edits still match; 64 permutations keep each signature at 256
bytes (memory grows by about half a kilobyte per segment with the LSH tables; see
benchmarks/README.md).

`clusters(...)` groups any sets of tokens (tool-set designs, first user requests) the same
way, for the diversity figures of the summary.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
from datasketch import MinHash, MinHashLSH

DEFAULT_THRESHOLD = 0.8  # estimated Jaccard similarity of 3-word shingles
NUM_PERM = 64
_WORD = re.compile(r"\w+")


def shingles(text: str, size: int = 3) -> set[bytes]:
    """The text's overlapping `size`-word windows, casefolded; short texts give their words."""
    words = _WORD.findall(text.casefold())
    if len(words) < size:
        return {w.encode() for w in words}
    return {" ".join(words[i:i + size]).encode() for i in range(len(words) - size + 1)}


def signature(tokens: Iterable[bytes]) -> MinHash:
    m = MinHash(num_perm=NUM_PERM, seed=1)
    batch = list(tokens)
    if batch:
        m.update_batch(batch)
    return m


class NearDuplicateIndex:
    """Segments seen so far; `twin(key, text)` says which earlier one a text nearly copies.

    Raises ValueError for a threshold outside (0, 1].
    """

    def __init__(self, threshold: float = DEFAULT_THRESHOLD):
        if not 0 < threshold <= 1:
            raise ValueError(f"near-duplicate threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self.lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
        self.hashes: dict[str, np.ndarray] = {}  # key -> signature (uint32), to confirm LSH candidates

    def twin(self, key: str, text: str) -> tuple[str, float] | None:
        """(earlier key, estimated Jaccard) when `text` nearly copies an earlier text, else None.
        Either way the text joins the index under `key` (a key seen before is not added again)."""
        m = signature(shingles(text))
        best: tuple[str, float] | None = None
        for other in self.lsh.query(m):
            if other == key:
                continue
            similarity = float(np.mean(self.hashes[other] == m.hashvalues.astype(np.uint32)))
            if similarity >= self.threshold and (best is None or similarity > best[1]):
                best = (other, similarity)
        if key not in self.hashes:
            self.lsh.insert(key, m)
            self.hashes[key] = m.hashvalues.astype(np.uint32)
        return best


def clusters(items: Iterable[tuple[str, set[bytes]]], threshold: float = 0.6) -> list[list[str]]:
    """Groups of keys whose token sets are near-duplicates (MinHash LSH, single link), largest first."""
    index = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    parent: dict[str, str] = {}

    def root(k: str) -> str:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for key, tokens in items:
        m = signature(tokens)
        parent[key] = key
        for other in index.query(m):
            parent[root(other)] = root(key)
        index.insert(key, m)
    groups: dict[str, list[str]] = {}
    for key in parent:
        groups.setdefault(root(key), []).append(key)
    return sorted(groups.values(), key=len, reverse=True)
