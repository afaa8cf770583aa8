"""The HTML page of a run, from a real run's ledger."""

from __future__ import annotations

import os
import re
import signal
import threading
from pathlib import Path

import pytest
from helpers import wait_for
from sample_pipelines import chain

from reliability import Runner
from reliability.runner.report import render_run_report, write_run_report

pytestmark = pytest.mark.integration


def test_run_page_shows_every_attempt_and_the_lost_worker(tmp_path: Path) -> None:
    signals = tmp_path / "sig<i>nals"  # markup in a parameter, shown on the page
    signals.mkdir()
    runner = Runner(chain, home=tmp_path / "h", workers=2)
    marker = signals / "transform.1.started"

    def killer() -> None:
        wait_for(lambda: marker.exists() and marker.read_text() != "", what="transform")
        os.kill(int(marker.read_text()), signal.SIGKILL)

    t = threading.Thread(target=killer)
    t.start()
    res = runner.run({"rows": 100, "signal_dir": str(signals), "slow_step": "transform",
                      "slow_seconds": 5.0}, run_id="page-1")
    t.join()
    assert res.ok
    page = write_run_report(runner.ledger, "page-", tmp_path / "out" / "run.html")
    html = page.read_text()
    assert "page-1" in html
    assert "sig<i>nals" not in html and "sig&lt;i&gt;nals" in html  # escaped
    assert html.count("<rect ") == len(runner.ledger.attempts(res.run_id)) == len(chain.steps) + 1
    assert re.search(r"<title>transform attempt 1: worker_lost", html)
    assert "<title>worker_lost at transform" in html  # the event is marked on the timeline
    for digest in res.outputs.values():
        assert digest in html  # every committed output is on the page


def test_a_run_still_going_is_drawn_up_to_now(tmp_path: Path) -> None:
    runner = Runner(chain, home=tmp_path / "h", workers=1)
    res = runner.run({"rows": 10})
    rec = runner.ledger.get_run(res.run_id)
    attempts = runner.ledger.attempts(res.run_id)
    attempts[-1] = {**attempts[-1], "status": "running", "ended_at": None}
    html = render_run_report(rec, runner.ledger.steps(res.run_id), attempts, [],
                             now=attempts[-1]["started_at"] + 2.0)
    assert "running</td>" in html and f"attempt {attempts[-1]['attempt']}: running" in html
