"""The Ray engine (`gem-synth run --engine ray`) under failure, on a 2-CPU local cluster.

The accounting, rerun and driver-kill tests run for both engines in tests/test_run.py;
here a Ray worker process dies under its segments, and a run starts its own cluster.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest

from tests.fixtures import PROCEDURE
from tests.test_run import KILL_SCRIPT

pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parent.parent
N = 12


@pytest.fixture
def slow_server(tmp_path):
    """The scripted server of the kill tests (0.15 s a call, a conversation per segment), its URL."""
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT.format(root=str(ROOT), log=str(tmp_path / "requests.log"))],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


def command(tmp_path, url, *engine):
    corpus = tmp_path / "corpus"
    if not corpus.exists():
        corpus.mkdir()
        for i in range(N):
            (corpus / f"doc{i:02d}.md").write_text(f"{PROCEDURE} Claim case number {i}.")
    return [sys.executable, "-m", "gem_synth.cli", "run", str(corpus), "--out", str(tmp_path / "out"), "--lm",
            "hosted_vllm/scripted", "--api-base", url, "--no-progress", "--no-track", "--workers", "4",
            "--cache-dir", str(tmp_path / "cache"), "--near-duplicates", "0", "--engine", "ray", *engine]


def segment_workers() -> list[int]:
    """PIDs of the Ray actor processes running segments (Ray titles them after the class)."""
    found = subprocess.run(["pgrep", "-f", "SegmentWorker"], capture_output=True, text=True).stdout.split()
    return [int(pid) for pid in found if int(pid) != os.getpid()]


def kill_a_worker_half_way(child: subprocess.Popen, journal: Path) -> int:
    deadline = time.time() + 180
    while time.time() < deadline and (not journal.exists() or journal.read_text().count("\n") < 3):
        assert child.poll() is None, "the run ended before any worker could be killed"
        time.sleep(0.05)
    workers = segment_workers()
    assert workers, "no Ray worker process found"
    os.kill(workers[0], signal.SIGKILL)
    return journal.read_text().count("\n")


def journal_ids(journal: Path) -> list[str]:
    return [json.loads(line)["id"] for line in journal.read_text().splitlines()]


def test_a_worker_killed_mid_segment_loses_nothing_and_duplicates_nothing(tmp_path, slow_server, ray_cluster):
    cmd = command(tmp_path, slow_server, "--ray-address", ray_cluster, "--ray-actors", "2")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    finished_at_kill = kill_a_worker_half_way(child, tmp_path / "out" / "journal.jsonl")
    _, err = child.communicate(timeout=300)
    assert child.returncode == 0, err
    assert finished_at_kill < N, "the kill must land half way"
    ids = journal_ids(tmp_path / "out" / "journal.jsonl")
    assert len(ids) == len(set(ids)) == N  # Ray ran the dead worker's segments again; each journalled once
    trajectories = datasets.load_from_disk(str(tmp_path / "out" / "trajectories"))
    assert trajectories.num_rows == N and len(set(trajectories["id"])) == N


def test_segments_of_a_worker_that_dies_past_its_retries_are_recorded_and_the_rerun_finishes_them(
        tmp_path, slow_server, ray_cluster):
    cmd = command(tmp_path, slow_server, "--ray-address", ray_cluster, "--ray-actors", "2")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GEM_SYNTH_RAY_WORKER_RETRIES": "0"}
    child = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    kill_a_worker_half_way(child, tmp_path / "out" / "journal.jsonl")
    _, err = child.communicate(timeout=300)
    assert child.returncode == 0, err  # the run goes on past the segments it lost
    rejects = datasets.load_from_disk(str(tmp_path / "out" / "rejects"))
    trajectories = datasets.load_from_disk(str(tmp_path / "out" / "trajectories"))
    assert trajectories.num_rows + rejects.num_rows == N
    lost = [r for r in rejects if r["outcome"] == "error"]
    assert lost and all(r["reason"] == "the Ray worker running it died 1 times" for r in lost), list(rejects)
    assert subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True).returncode == 0  # the next session
    trajectories = datasets.load_from_disk(str(tmp_path / "out" / "trajectories"))
    assert trajectories.num_rows == N and datasets.load_from_disk(str(tmp_path / "out" / "rejects")).num_rows == 0


def test_without_an_address_the_run_starts_a_local_cluster_and_stops_it(tmp_path, slow_server):
    cmd = command(tmp_path, slow_server, "--limit", "3")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run(cmd, cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert datasets.load_from_disk(str(tmp_path / "out" / "trajectories")).num_rows == 3
    sessions = [json.loads(line) for line in (tmp_path / "out" / "sessions.jsonl").read_text().splitlines()]
    assert sessions[-1]["engine"] == "ray" and sessions[-1]["segments"] == 3
    assert "Traceback" not in done.stderr


def test_an_unreachable_cluster_is_one_line(tmp_path, slow_server):
    done = subprocess.run(command(tmp_path, slow_server, "--ray-address", "127.0.0.1:1"), cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()[-1:]
    assert line.startswith("gem-synth: error: cannot reach Ray at 127.0.0.1:1") and "Traceback" not in done.stderr
