"""``evaluate --report report.html``: one self-contained page that a real browser renders — the summary, WER by
speaker and duration, the top errors, every utterance aligned and sortable by errors, audio players."""

from __future__ import annotations

import json
import os
import re

import pytest

from asrforge.cli import main
from asrforge.html_report import write_html_report
from asrforge.metrics import ErrorReport
from conftest import REPO  # noqa: F401 (the repository's conftest sets up paths)

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def chromium():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("ASRFORGE_BROWSER_TESTS") == "required":
            pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium); .ci/run installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


def test_the_report_renders_in_a_browser_and_sorts_by_errors(trained, corpus, tmp_path, chromium):
    page_file = tmp_path / "out" / "report.html"
    out = tmp_path / "ev.json"
    assert main(["evaluate", "--model", str(trained), "--manifest", str(corpus / "test.jsonl"), "--beam-size", "1",
                 "--report", str(page_file), "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    text = page_file.read_text()
    assert not re.search(r"(src|href)=['\"]https?://", text)          # nothing fetched: the page is all there is
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, offline=True)
    page = context.new_page()
    page.goto(page_file.as_uri())
    assert page.locator("#utterances tbody tr").count() == summary["utts"]
    assert f"{100 * summary['wer']:.2f} %" in page.locator("#summary").inner_text()
    assert page.locator("#by-speaker tbody tr").count() >= 1 and page.locator("#by-duration tbody tr").count() >= 1
    assert page.locator("#utterances audio").count() == summary["utts"]       # each audio file linked
    errors = [int(t) for t in page.locator("#utterances td.errors").all_inner_texts()]
    assert sum(errors) == summary["sub"] + summary["del"] + summary["ins"]
    page.locator("#utterances th", has_text="errors").click()               # most errors first
    ranked = [int(t) for t in page.locator("#utterances td.errors").all_inner_texts()]
    assert ranked == sorted(errors, reverse=True)
    page.screenshot(path=str(tmp_path / "report.png"), full_page=False)
    context.close()


def test_errors_are_marked_and_an_empty_evaluation_says_so(tmp_path):
    report = ErrorReport()
    report.add("u1", "one two three", "one too three four", "spk")
    summary = {**report.summary(), "wer_ci": [0.1, 0.9], "cer_ci": None}
    text = write_html_report(tmp_path / "r.html", report, summary, {}, "t").read_text()
    assert "<span class='sub' title='substituted'>two</span>" in text and "<span class='ins' title='inserted'>four</span>" in text
    assert "95 % CI 10.00–90.00" in text
    empty = write_html_report(tmp_path / "e.html", ErrorReport(), {}, {}, "t", [("u9", "cannot be read")]).read_text()
    assert "No utterance could be scored" in empty and "u9: cannot be read" in empty
