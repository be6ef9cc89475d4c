"""`gem-synth view`: the report of a real (replayed) run, checked in a real headless browser."""

import shutil
from pathlib import Path

import pytest

from gem_synth.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
RECORDING = ROOT / "tests" / "recordings" / "strong-model.jsonl"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("view")
    assert main(["run", str(ROOT / "examples" / "corpus"), "--out", str(root / "run"), "--lm", f"replay/{RECORDING}",
                 "--no-track", "--no-progress", "--workers", "1"]) == 0
    assert main(["view", str(root / "run")]) == 0
    return root / "run" / "report.html"


def test_the_page_holds_every_trajectory_and_every_reject(report):
    import datasets

    page = report.read_text()
    run = report.parent
    trajectories = datasets.load_from_disk(str(run / "trajectories"))
    rejects = datasets.load_from_disk(str(run / "rejects"))
    assert page.count('class="card trajectory"') == trajectories.num_rows == 11
    assert page.count('class="card reject"') == rejects.num_rows == 8
    assert all(f'data-id="{i}"' in page for i in trajectories["id"])
    assert "<script src" not in page and "http://" not in page.split("</style>")[0]  # self-contained


def test_the_report_works_from_python_and_in_a_notebook(report):
    from gem_synth.running.viewer import render_run, show

    assert render_run(report.parent).startswith("<!doctype html>")
    assert "Trajectories (11)" in show(report.parent).data


def test_a_folder_without_a_journal_is_one_line(tmp_path, capsys):
    assert main(["view", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"gem-synth: error: {tmp_path}: no journal.jsonl")


@pytest.mark.skipif(shutil.which("chromedriver") is None, reason="Chromium is installed by `scripts/setup.sh test` "
                                                                   "(as root, from Debian's packages)")
def test_the_page_in_headless_chromium(report, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,1600"):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get(report.resolve().as_uri())
        card = next(c for c in driver.find_elements(By.CSS_SELECTOR, ".card.trajectory")
                    if "gym-membership.md" in c.text)
        card.find_element(By.TAG_NAME, "summary").click()
        call = next(c for c in card.find_elements(By.CSS_SELECTOR, ".call") if "start_member_verification" in c.text)
        assert call.is_displayed() and "FM-204817" in call.text  # a known tool call and its argument
        driver.find_element(By.CSS_SELECTOR, "button[data-outcome='judge_failed']").click()
        shown = [c for c in driver.find_elements(By.CSS_SELECTOR, ".card.reject") if c.is_displayed()]
        assert [c.text.splitlines()[0] for c in shown] == [f"judge_failed at judge: {name}.md" for name in (
            "event-tickets", "lost-card", "open-bank-account", "return-an-order")]
        shown[0].find_element(By.TAG_NAME, "summary").click()
        assert shown[0].find_element(By.CSS_SELECTOR, ".reason").text == "failed capability_hallucination"
        screenshot = tmp_path / "report.png"
        assert driver.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 20_000
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
    finally:
        driver.quit()
