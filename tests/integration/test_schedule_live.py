"""Real processes and sockets: a SIGKILLed backfill resumes; file and HTTP events fire runs."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import free_port, post_json

from reliability.pipeline import Pipeline, StepContext
from reliability.schedule import (
    Catchup,
    CatchupPolicy,
    CronTimetable,
    FileWatch,
    RunnerExecutor,
    Schedule,
    Scheduler,
)
from reliability.schedule.serve import TriggerServer

pytestmark = pytest.mark.integration
UTC = dt.UTC

TINY = '''
import os, time
from reliability import Pipeline

pipeline = Pipeline("tiny")

@pipeline.step
def extract(ctx):
    time.sleep(float(os.environ.get("TINY_SLEEP", "0")))
    return ctx.interval.key()

@pipeline.step
def load(extract):
    return len(extract)
'''


def _rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    if not db.exists():
        return []
    con = sqlite3.connect(db, timeout=10)
    try:
        return con.execute(sql).fetchall()
    except sqlite3.OperationalError:  # tables not created yet
        return []
    finally:
        con.close()


def test_sigkilled_backfill_resumes_without_repeating_completed_intervals(
        tmp_path: Path) -> None:
    (tmp_path / "tinymod.py").write_text(TINY)
    home = tmp_path / "home"
    db = home / "ledger.db"
    cmd = [sys.executable, "-m", "reliability", "backfill", "tinymod:pipeline",
           "--start", "2026-01-01", "--end", "2026-01-09", "--every", "1d",
           "--home", str(home), "--workers", "1"]
    env = {**os.environ, "TINY_SLEEP": "0.3"}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = _rows(db, "SELECT COUNT(*) FROM schedule_runs WHERE status='succeeded'")
            busy = _rows(db, "SELECT r.run_id FROM schedule_runs s JOIN runs r USING (run_id)"
                             " WHERE s.status='running' AND r.status='running'")
            if done and int(done[0][0]) >= 3 and busy:  # type: ignore[call-overload]
                break
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # forked step workers of the killed run
        if proc.stdout:
            proc.stdout.close()
    before = dict(_rows(db, "SELECT run_id, ended_at FROM runs WHERE status='succeeded'"))
    assert 3 <= len(before) < 8
    interrupted = busy[0][0]  # killed midway: its run must be resumed, not started anew
    resumed = subprocess.run(cmd, cwd=tmp_path, env={**env, "TINY_SLEEP": "0"},
                             check=False, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "(resumed)" in resumed.stderr
    runs = _rows(db, "SELECT interval_start, COUNT(*), MIN(status), MAX(status) FROM runs"
                     " GROUP BY interval_start ORDER BY interval_start")
    assert len(runs) == 8
    assert all(n == 1 and lo == hi == "succeeded" for _, n, lo, hi in runs)  # one run each
    after = dict(_rows(db, "SELECT run_id, ended_at FROM runs"))
    assert interrupted in after
    assert {r: after[r] for r in before} == before  # completed runs were not touched again
    # and no completed step ran a second attempt
    extra = _rows(db, "SELECT run_id, step, COUNT(*) FROM attempts WHERE status='succeeded'"
                      " GROUP BY run_id, step HAVING COUNT(*) > 1")
    assert extra == []
    items = _rows(db, "SELECT status, COUNT(*) FROM backfill_items GROUP BY status")
    assert items == [("succeeded", 8)]



@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_parallel_backfill_stops_on_a_signal_and_resumes(tmp_path: Path, sig: int) -> None:
    (tmp_path / "tinymod.py").write_text(TINY)
    home = tmp_path / "home"
    db = home / "ledger.db"
    cmd = [sys.executable, "-m", "reliability", "backfill", "tinymod:pipeline",
           "--start", "2026-01-01", "--end", "2026-01-21", "--every", "1d", "-j", "2",
           "--home", str(home), "--workers", "1"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env={**os.environ, "TINY_SLEEP": "0.5"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not _rows(db, "SELECT 1 FROM runs WHERE status='running'"):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(sig)
        out = proc.communicate(timeout=30)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 130, out
    assert "rerun the same command to continue" in out
    ran = _rows(db, "SELECT COUNT(*) FROM runs")[0][0]
    assert ran <= 6, out  # stopped at once, not after all 20 intervals
    assert _rows(db, "SELECT COUNT(*) FROM runs WHERE status='running'")[0][0] == 0
    again = subprocess.run(cmd, cwd=tmp_path, env={**os.environ, "TINY_SLEEP": "0"},
                           capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0, again.stderr
    runs = _rows(db, "SELECT interval_start, COUNT(DISTINCT run_id) FROM runs"
                     " GROUP BY interval_start")
    assert len(runs) == 20 and all(n == 1 for _, n in runs)  # cancelled runs resumed


pipe = Pipeline("landing")


@pipe.step
def read(ctx: StepContext) -> str:
    assert ctx.interval is not None
    return ctx.interval.key()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Scheduler, Path]]:
    landing = tmp_path / "landing"
    landing.mkdir()
    s = Schedule("arrivals", "landing", CronTimetable("0 0 * * *"),
                 catchup=Catchup(CatchupPolicy.SKIP), fire_on_time=False,
                 watch=FileWatch(landing, "*.csv", "dt=%Y-%m-%d", poll=0.05))
    sched = Scheduler([s], execute=RunnerExecutor(tmp_path / "home",
                                                  pipelines={"landing": pipe}, workers=1),
                      home=tmp_path / "home",
                      now=lambda: dt.datetime(2026, 2, 1, 12, tzinfo=UTC))
    sched.start()
    try:
        yield sched, landing
    finally:
        sched.shutdown()
        sched.store.close()


def test_a_file_arriving_fires_a_run_for_its_partition(live: tuple[Scheduler, Path]) -> None:
    sched, landing = live
    part = landing / "dt=2026-01-15"
    part.mkdir()
    (part / "wine.csv").write_text("a,b\n1,2\n")
    deadline = time.monotonic() + 20
    row = None
    while time.monotonic() < deadline:
        row = sched.store.query("SELECT interval_start, status, trigger FROM schedule_runs")
        if row and row[0][1] == "succeeded":
            break
        time.sleep(0.05)
    assert row and tuple(row[0]) == ("2026-01-15T00:00:00.000000Z", "succeeded",
                                     "file:dt=2026-01-15/wine.csv")


def test_http_trigger_starts_once_then_answers_409(live: tuple[Scheduler, Path]) -> None:
    sched, _ = live
    server = TriggerServer(sched, "127.0.0.1", 0).start()
    try:
        body = json.dumps({"interval": "2026-01-20T00:00:00+00:00/2026-01-21T00:00:00+00:00"})
        url = f"{server.url}/trigger/arrivals"
        code, first = post_json(url, body.encode())
        assert code == 202 and first["started"] is True
        code, second = post_json(url, body.encode())
        assert code == 409 and second["started"] is False
        assert "duplicate trigger ignored" in str(second["reason"])
        assert second["run_id"] == first["run_id"]
        with urllib.request.urlopen(f"{server.url}/schedules", timeout=10) as resp:
            listing = json.loads(resp.read())
        assert listing[0]["name"] == "arrivals" and len(listing[0]["next"]) == 3
    finally:
        server.stop()


def test_schedule_list_cli_shows_next_fires(tmp_path: Path) -> None:
    (tmp_path / "tinymod.py").write_text(TINY)
    f = tmp_path / "tiny.schedule.yaml"
    f.write_text("schedules:\n  - name: tiny-daily\n    pipeline: tinymod:pipeline\n"
                 "    cron: '30 2 * * *'\n    timezone: Europe/Berlin\n")
    out = subprocess.run([sys.executable, "-m", "reliability", "schedule", "list", "--file",
                          str(f), "--home", str(tmp_path / "home"), "-n", "2"],
                         cwd=tmp_path, check=False, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "COLUMNS": "80"})
    assert out.returncode == 0, out.stderr
    assert "tiny-daily" in out.stdout and "Europe/Berlin" in out.stdout
    fires = [ln for ln in out.stdout.splitlines() if " 02:30+0" in ln and " .. " in ln]
    assert len(fires) == 2, out.stdout  # whole fire times and intervals, even at 80 columns
    bad = subprocess.run([sys.executable, "-m", "reliability", "backfill", "tinymod:pipeline",
                          "--start", "2026-01-05", "--end", "2026-01-01", "--every", "1d",
                          "--home", str(tmp_path / "home")],
                         cwd=tmp_path, check=False, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --end")


def test_schedule_serve_process_exposes_metrics_and_triggers(tmp_path: Path) -> None:
    (tmp_path / "tinymod.py").write_text(TINY)
    f = tmp_path / "tiny.schedule.yaml"
    f.write_text("schedules:\n  - name: tiny-hourly\n    pipeline: tinymod:pipeline\n"
                 "    cron: '0 * * * *'\n")
    http, metrics = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "reliability", "schedule", "serve", "--file", str(f),
         "--home", str(tmp_path / "home"), "--http-port", str(http),
         "--metrics-port", str(metrics)], cwd=tmp_path, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        text = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics",
                                            timeout=2) as resp:
                    text = resp.read().decode()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.1)
        assert "reliability_schedule_next_fire_timestamp_seconds" in text
        assert 'reliability_schedule_freshness_threshold_seconds{schedule="tiny-hourly"} 7500' \
            in text.replace(".0", "")
        req = urllib.request.Request(f"http://127.0.0.1:{http}/trigger/tiny-hourly",
                                     data=b"{}", method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                code = resp.status
        except urllib.error.HTTPError as err:  # already run by the start-up catch-up
            with err:
                code = err.code
        assert code in (202, 409)
        proc.terminate()
        assert proc.wait(20) == 0
        assert proc.stderr is not None
        lines = proc.stderr.read().splitlines()
        fired = [ln for ln in lines if ln.startswith("fired   tiny-hourly ")]
        noop = [ln for ln in lines if ln.startswith("no-op   tiny-hourly ")]
        assert fired, lines  # each fire says what it started ...
        if code == 409:  # ... and a duplicate says why it was one, once
            assert len(noop) == 1 and "duplicate trigger ignored" in noop[0], lines
            assert sum("duplicate trigger ignored" in ln for ln in lines) == 1, lines
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stderr:
            proc.stderr.close()
