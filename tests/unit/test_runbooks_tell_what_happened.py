"""Runbooks tell what happened: no resume for a run that succeeded, the real duration of a
step that breached its budget while running, and an evidence table a multi-line error
cannot break."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from reliability import EventBus, Pipeline, Retry, Runner, StepContext
from reliability.runbooks import Evidence, RunbookRenderer
from reliability.runbooks.from_ledger import run_evidence
from reliability.sla import SLA, SLAMonitor, SLASet


def evidence(**kw: object) -> Evidence:
    base: dict[str, object] = {"family": "worker_lost", "pipeline": "reference",
                               "run_id": "reference-1", "summary": "s", "step": "train"}
    base.update(kw)
    return Evidence(**base)  # type: ignore[arg-type]


def test_a_run_that_succeeded_gets_no_resume() -> None:
    renderer = RunbookRenderer()
    done = renderer.render(evidence(outcome="succeeded")).markdown
    assert "reliability resume" not in done
    assert "succeeded in the end" in done and "nothing to resume" in done
    assert "| Run outcome | succeeded |" in done
    failed = renderer.render(evidence(outcome="failed")).markdown
    assert "Resume the run" in failed and "reliability resume reference-1" in failed
    running = renderer.render(evidence()).markdown
    assert "If the run fails, resume it" in running
    assert "reliability resume reference-1" in running
    assert "| Run outcome | not known when this was written |" in running


def test_settling_keeps_custom_commands_and_recomputes_the_defaults() -> None:
    ev = evidence(interval={"start": "2026-01-01", "end": "2026-01-02"})
    assert set(ev.commands) == {"resume", "backfill"}
    assert set(ev.settled("succeeded").commands) == {"backfill"}
    assert set(ev.settled("failed").commands) == {"resume", "backfill"}
    custom = evidence(commands={"page": "call the owner"})
    assert custom.settled("succeeded").commands == {"page": "call the owner"}


MULTI_LINE = ("Traceback (most recent call last):\n  File \"train.py\", line 3, in fit\n"
              "    x = a | b\nValueError: bad | worse \\\n")


def _table(markdown: str) -> list[str]:
    lines = markdown.splitlines()
    start = lines.index("| | |")
    end = next(i for i in range(start, len(lines)) if not lines[i].strip())
    return lines[start:end]


def test_a_multi_line_error_keeps_the_evidence_table_whole() -> None:
    book = RunbookRenderer().render(evidence(family="step_failed", error=MULTI_LINE,
                                             error_type="ValueError"))
    rows = _table(book.markdown)
    assert rows[1] == "|---|---|"
    assert all(r.startswith("| ") and r.endswith(" |") and r.count(" | ") == 1
               for r in rows[2:]), rows
    labels = [r.split(" | ")[0].removeprefix("| ") for r in rows[2:]]
    assert labels == ["Pipeline", "Run", "Step", "When", "Run outcome", "Error",
                      "Last good run"]
    error_row = next(r for r in rows if r.startswith("| Error |"))
    assert "Traceback (most recent call last): ↵ File" in error_row
    assert r"a \| b" in error_row and r"bad \| worse \\ |" in error_row
    # the HTML has the same table, the Error cell whole, and the full error below it
    html = book.html
    cells = re.findall(r"<tr>\s*<td>(.*?)</td>\s*<td>(.*?)</td>\s*</tr>", html, re.S)
    assert [c[0] for c in cells] == labels
    error_cell = dict(cells)["Error"]
    assert "x = a | b ↵ ValueError: bad | worse \\" in error_cell
    assert "<pre><code>Traceback (most recent call last):\n  File &quot;train.py&quot;" in html


def test_a_pipe_or_newline_in_a_failure_case_stays_on_its_line() -> None:
    md = RunbookRenderer().render(evidence(family="contract_violation", failures=[{
        "contract": "raw", "column": "name", "check": "str_matches", "failure_count": 1,
        "failure_cases": ["a\nb"]}])).markdown
    assert "e.g. `a ↵ b`" in md


timed = Pipeline("timed")


@timed.step(retry=Retry(attempts=2, backoff=0))
def crashy(ctx: StepContext) -> int:
    if ctx.attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)  # the worker dies; the retry succeeds
    return 1


@timed.step
def slow(crashy: int) -> int:
    time.sleep(1.7)
    return crashy


@pytest.mark.integration
def test_runbooks_of_a_run_that_succeeded_tell_its_outcome_and_real_durations(
        tmp_path: Path) -> None:
    bus = EventBus()
    runner = Runner(timed, home=tmp_path, bus=bus, workers=1)
    slas = SLASet("timed", [SLA(step="slow", max_duration=0.5)])
    try:
        with SLAMonitor(slas, bus, registry=CollectorRegistry(), ledger=runner.ledger,
                        runbooks=RunbookRenderer()) as mon:
            result = runner.run()
            mon.flush()
        assert result.ok, result.failed
        assert mon.errors == []
        folder = tmp_path / "runbooks" / result.run_id
        assert sorted(p.name for p in folder.glob("*.md")) == [
            "sla_breach-slow-max_duration.md", "worker_lost-crashy.md"]
        breach = (folder / "sla_breach-slow-max_duration.md").read_text()
        assert "- Limit: 500ms; observed: 2s\n" in breach  # the step took 1.7 s, not 0.5
        assert re.search(r"Detected live, while still running \(at (5\d\d|6\d\d)ms\)", breach)
        lost = (folder / "worker_lost-crashy.md").read_text()
        for text in (breach, lost):
            assert "reliability resume" not in text
            assert "| Run outcome | succeeded |" in text
        # read back from the ledger: the same story
        books = {e.family: e for e in run_evidence(runner.ledger, result.run_id)}
        assert set(books) == {"sla_breach", "worker_lost"}
        assert all(e.outcome == "succeeded" and "resume" not in e.commands
                   for e in books.values())
        took = books["sla_breach"].breach["took"]  # type: ignore[index]
        assert 1.7 <= took < 5
    finally:
        runner.close()
