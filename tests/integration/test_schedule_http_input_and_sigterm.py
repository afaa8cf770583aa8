"""The scheduler with real sockets and processes: bad HTTP trigger bodies get a 400 that says
why, and SIGTERM cancels a run in progress instead of waiting for it."""

from __future__ import annotations

import datetime as dt
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import free_port, post_json

from reliability.schedule import CronTimetable, RunRequest, Schedule, Scheduler
from reliability.schedule.scheduler import RunOutcome
from reliability.schedule.serve import TriggerServer

pytestmark = pytest.mark.integration
UTC = dt.UTC


def _ok(req: RunRequest) -> RunOutcome:
    return RunOutcome(req.run_id, "succeeded")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[TriggerServer]:
    sched = Scheduler([Schedule("daily", "p", CronTimetable("30 2 * * *", "Europe/Berlin"))],
                      execute=_ok, home=tmp_path, now=lambda: dt.datetime(2026, 2, 1, tzinfo=UTC))
    srv = TriggerServer(sched, "127.0.0.1", 0).start()
    try:
        yield srv
    finally:
        srv.stop()
        sched.shutdown()
        sched.store.close()


@pytest.mark.parametrize(("body", "needle"), [
    (b'{"interval": 5}', "must be strings"),
    (b'{"reprocess": ["all"]}', "must be strings"),
    (b"not json", "body is not JSON"),
    (b'{"interval": "2026-02-01T01:30:00+00:00/2026-02-01T05:30:00+00:00"}',
     "not a data interval of schedule 'daily'"),
])
def test_bad_trigger_bodies_get_a_400_that_says_why(server: TriggerServer, body: bytes,
                                                    needle: str) -> None:
    code, answer = post_json(f"{server.url}/trigger/daily", body)
    assert code == 400 and needle in str(answer["error"])


TINY = '''
import time
from reliability import Pipeline

pipeline = Pipeline("tinyterm")

@pipeline.step
def extract(ctx):
    time.sleep(60)
    return 1
'''


def _status(db: Path) -> list[str]:
    try:
        with sqlite3.connect(db, timeout=10) as con:
            return [r[0] for r in con.execute(
                "SELECT status FROM schedule_runs WHERE status != 'skipped'")]
    except sqlite3.OperationalError:
        return []


def test_sigterm_cancels_a_run_in_progress_instead_of_waiting_for_it(tmp_path: Path) -> None:
    (tmp_path / "tinyterm.py").write_text(TINY)
    f = tmp_path / "t.schedule.yaml"
    f.write_text("schedules:\n  - name: t\n    pipeline: tinyterm:pipeline\n"
                 "    cron: '0 * * * *'\n")
    db = tmp_path / "home" / "ledger.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "reliability", "schedule", "serve", "--file", str(f),
         "--home", str(tmp_path / "home"), "--http-port", str(free_port()),
         "--metrics-port", "0"], cwd=tmp_path, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while _status(db) != ["running"] and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.1)
        assert _status(db) == ["running"]  # the start-up catch-up runs the latest hour
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert _status(db) == ["cancelled"]  # resumable by the next start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stderr:
            proc.stderr.close()
