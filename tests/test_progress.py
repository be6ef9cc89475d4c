"""Progress that knows its end: N/total, outcomes, tokens, ETA; one line a minute in a log."""

import io

from gem_synth.cli.main import main
from gem_synth.running.progress import Progress, count


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_log_gets_one_line_a_minute_with_total_outcomes_tokens_and_eta():
    clock, out = Clock(), io.StringIO()
    progress = Progress(total=10, stream=out, clock=clock)
    for i in range(4):
        clock.now += 20  # a segment every 20 s
        progress.update("accepted" if i % 2 else "filtered_out", tokens=100)
    lines = out.getvalue().splitlines()
    assert lines == ["gem-synth: 3/10 segments, accepted=1 filtered_out=2 tokens=300, ETA 2m20s"]
    progress.close()
    assert out.getvalue().splitlines()[-1] == "gem-synth: 4/10 segments, accepted=2 filtered_out=2 tokens=400, ETA 2m00s"


def test_a_resumed_run_starts_from_what_is_done():
    out = io.StringIO()
    progress = Progress(total=19, done=12, stream=out, clock=Clock())
    progress.update("accepted")
    progress.close()
    assert out.getvalue().startswith("gem-synth: 13/19 segments")


def test_counting_gives_up_past_its_budget():
    assert count(range(1000)) == 1000
    assert count(iter(lambda: 1, None), budget_seconds=0.01) is None  # endless: no total


def test_the_run_shows_n_of_total(tmp_path, monkeypatch, capsys):
    from pathlib import Path

    monkeypatch.chdir(tmp_path)
    corpus = Path(__file__).resolve().parent.parent / "examples" / "corpus"
    recording = Path(__file__).resolve().parent / "recordings" / "strong-model.jsonl"
    assert main(["run", str(corpus / "gym-membership.md"), "--out", "o", "--lm", f"replay/{recording}",
                 "--no-track"]) == 0
    assert "gem-synth: 1/1 segments, accepted=1 tokens=" in capsys.readouterr().err
