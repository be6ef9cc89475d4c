"""A misbehaving server loses no segment: each ends in exactly one table, with its reason.

Small and untimed (benchmarks/bench_faults.py measures retries and extra time).
"""

import re

import datasets
import pytest

from benchmarks.stage_server import StageServer
from gem_synth.cli.main import main

# What a segment hit by each fault may end as, when retries do not save it.
EXPECTED = {
    "500": ("lm_error", r"LMServerError"),
    "429": ("lm_error", r"LMRateLimitError"),
    "hang": ("lm_error", r"LMTimeoutError|timed out"),
    "truncate": ("lm_error", r"LM\w*Error"),
    "malformed": ("parse_error", r"parse"),
    "empty": ("parse_error", r"empty or null response|parse"),
}


def corpus(tmp_path, n):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i in range(n):
        (folder / f"doc{i:02d}.md").write_text(f"To return item {i}, sign in, open Orders, choose Return, print "
                                               "the label and drop the parcel at a partner shop within 30 days.")
    return folder


def run(server, folder, out, engine, retries="2", workers="4"):
    return main(["run", str(folder), "--out", str(out), "--lm", "hosted_vllm/bench", "--api-base", server.url,
                 "--no-progress", "--no-track", "--workers", workers, "--timeout", "1.5", "--num-retries", retries,
                 "--cache-dir", str(out.parent / "cache"), "--stages", "filter,extract,generate,validate",
                 "--near-duplicates", "0", *engine])  # the corpus is one procedure in many numbered variants


def tables(out):
    return (datasets.load_from_disk(str(out / "trajectories")), datasets.load_from_disk(str(out / "rejects")))


@pytest.mark.parametrize("fault", list(EXPECTED))
def test_each_fault_ends_every_segment_once_with_its_reason(tmp_path, fault, engine):
    folder = corpus(tmp_path, 6)
    with StageServer(0.0, {fault: 0.35}, seed=3, hang_seconds=4) as server:
        assert run(server, folder, tmp_path / "out", engine, retries="0", workers="1") == 0
        assert server.stats.faults[fault] > 0
    accepted, rejects = tables(tmp_path / "out")
    ids = list(accepted["id"]) + list(rejects["id"])
    assert len(ids) == len(set(ids)) == 6
    outcome, pattern = EXPECTED[fault]
    for row in rejects:
        assert row["outcome"] == outcome and re.search(pattern, row["reason"]), (fault, row["outcome"], row["reason"])
    assert rejects.num_rows > 0 or fault in ("malformed", "empty")  # parse faults may all be re-asked away


def test_all_faults_at_once_then_a_healthy_rerun_recovers_the_transient_ones(tmp_path, engine):
    folder = corpus(tmp_path, 12)
    faults = {f: 0.1 for f in EXPECTED}
    with StageServer(0.0, faults, seed=1, hang_seconds=4) as server:
        assert run(server, folder, tmp_path / "out", engine, retries="1") == 0
        accepted, rejects = tables(tmp_path / "out")
        assert accepted.num_rows + rejects.num_rows == 12
        assert len(set(accepted["id"]) | set(rejects["id"])) == 12
        transient = [r for r in rejects if r["outcome"] == "lm_error"]
        assert transient  # 40% transient faults a call, one retry: some segments run out of tries
        server.faults = {}  # the server heals; the same command runs again
        before = server.stats.requests
        assert run(server, folder, tmp_path / "out", engine, retries="1") == 0
        rerun_calls = server.stats.requests - before
    accepted2, rejects2 = tables(tmp_path / "out")
    assert accepted2.num_rows + rejects2.num_rows == 12
    assert accepted2.num_rows == accepted.num_rows + len(transient)
    assert [r["outcome"] for r in rejects2] == ["parse_error"] * rejects2.num_rows
    assert rerun_calls <= 1 + 4 * len(transient)  # the pre-flight, then only the transient segments' calls
