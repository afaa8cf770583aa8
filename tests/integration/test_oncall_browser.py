"""The pages of `reliability serve` in a real headless browser (Debian's chromium, driven by
playwright, JavaScript off): the run page, a runbook and the alert list, asserted on the DOM.

Set RELIABILITY_REQUIRE_BROWSER=1 (CI does) to turn a missing browser into a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reliability import Pipeline, Retry, Runner
from reliability.web import serve
from reliability.web.server import OnCallServer

pytestmark = pytest.mark.integration

EVIL = '<script>document.title="pwned"</script>'
demo = Pipeline("browser_demo")


@demo.step
def load() -> int:
    return 41


@demo.step(retry=Retry(attempts=2, backoff=0))
def score(load: int) -> int:
    raise ValueError(f"model drifted {EVIL}")


def _chromium() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    try:
        import playwright  # noqa: F401
    except ImportError:
        path = ""
    if not Path(path or "/nonexistent").exists():
        if os.environ.get("RELIABILITY_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium and playwright are required (RELIABILITY_REQUIRE_BROWSER=1)")
        pytest.skip("chromium or playwright is not installed")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(java_script_enabled=False)  # plain HTML must suffice
    pg = context.new_page()
    yield pg
    context.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[OnCallServer, str]]:
    home = tmp_path / "home"
    runner = Runner(demo, home=home, workers=1)
    try:
        failed = runner.run(resume=False)
    finally:
        runner.close()
    assert not failed.ok
    with serve(home, port=0) as srv:
        body = json.dumps({"version": "4", "status": "firing", "alerts": [{
            "status": "firing", "fingerprint": "0a1b", "startsAt": "2030-01-01T00:00:00Z",
            "labels": {"alertname": "ReliabilityStepFailed", "pipeline": "browser_demo",
                       "step": "score", "severity": "page"},
            "annotations": {"summary": "step score of pipeline browser_demo failed",
                            "runbook_url": f"{srv.url}/runbooks/browser_demo/"
                                           "step_failed.html?step=score"}}]}).encode()
        req = urllib.request.Request(f"{srv.url}/alerts/webhook", data=body, method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200
        yield srv, failed.run_id


def test_the_run_page_shows_steps_attempts_and_links_the_runbook(
        page: Any, server: tuple[OnCallServer, str]) -> None:
    srv, run_id = server
    page.goto(f"{srv.url}/runs")
    page.locator(f'table#runs a[href="/runs/{run_id}"]').click()
    assert page.locator("h1").inner_text() == f"browser_demo {run_id}"
    assert page.locator(".badge").inner_text() == "failed"
    steps = page.locator("h2:has-text('Steps') + table tr")
    cells = [steps.nth(i).locator("td").nth(1).inner_text() for i in (1, 2)]
    assert cells == ["succeeded", "failed"]
    attempts = page.locator("h2:has-text('Attempts') + table tr")
    assert attempts.count() == 1 + 3  # load once, score twice
    assert page.locator("svg rect").count() == 3  # one bar per attempt on the timeline
    assert EVIL in page.locator("body").inner_text()  # shown as text ...
    assert page.locator("script").count() == 0  # ... never markup

    page.locator("nav a.runbook").click()
    assert page.locator("h1").inner_text() == "Step failed: score in browser_demo"


def test_a_runbook_renders_the_failure_evidence(page: Any,
                                               server: tuple[OnCallServer, str]) -> None:
    srv, run_id = server
    page.goto(f"{srv.url}/runbooks/browser_demo/step_failed.html?step=score")
    assert page.locator("h1").inner_text() == "Step failed: score in browser_demo"
    evidence = {page.locator("table tr").nth(i).locator("td").nth(0).inner_text():
                page.locator("table tr").nth(i).locator("td").nth(1).inner_text()
                for i in range(1, page.locator("table tr").count())}
    assert evidence["Run"] == run_id and evidence["Step"] == "score (attempt 2)"
    assert EVIL in evidence["Error"] and evidence["Last good run"] == "none recorded"
    commands = page.locator("pre code").all_inner_texts()
    assert any(c.strip() == f"reliability resume {run_id} --home "
               f"{srv.app.home}" for c in commands)
    assert page.locator("#evidence-run").get_attribute("href") == f"/runs/{run_id}"
    assert page.locator("script").count() == 0 and EVIL in page.title()  # text, not markup


def test_the_alert_list_says_what_fired_when_and_what_to_do(
        page: Any, server: tuple[OnCallServer, str]) -> None:
    srv, run_id = server
    page.goto(f"{srv.url}/")
    page.locator("nav >> text=Alerts").first.click()
    rows = page.locator("table#alerts tr.alert")
    assert rows.count() == 1
    cells = rows.first.locator("td").all_inner_texts()
    assert cells[:5] == ["firing", "ReliabilityStepFailed", "browser_demo", "score",
                         "2030-01-01T00:00:00Z"]
    assert "step score of pipeline browser_demo failed" in cells[6]
    assert f"reliability resume {run_id}" in cells[7]
    rows.first.locator("a.runbook").click()
    assert page.locator("h1").inner_text() == "Step failed: score in browser_demo"
    assert page.locator("#evidence-run").inner_text() == run_id

    page.goto(f"{srv.url}/alerts/1")
    frame = page.frame_locator("iframe#runbook")
    assert frame.locator("h1").inner_text() == "Step failed: score in browser_demo"
