"""The runner against real worker processes, real signals and a real SQLite ledger."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import subprocess_env, wait_for
from sample_pipelines import chain, flaky, hang

from reliability import EventBus, EventKind, Ledger, Runner

pytestmark = pytest.mark.integration


def _clean_run(tmp_path: Path) -> dict[str, str]:
    res = Runner(chain, home=tmp_path / "clean", workers=2).run({"rows": 3000})
    assert res.ok
    return res.outputs


def test_clean_run_records_everything(home: Path) -> None:
    r = Runner(chain, home=home, workers=2)
    res = r.run({"rows": 100})
    assert res.status == "succeeded" and set(res.outputs) == set(chain.steps)
    steps = {s["step"]: s for s in r.ledger.steps(res.run_id)}
    assert steps["sink"]["input_hashes"] and all(s["status"] == "succeeded"
                                                for s in steps.values())
    assert next(c["step"] for c in r.ledger.commits(res.run_id)) == "source"
    for digest in res.outputs.values():
        assert r.store.verify(digest)
    run = r.ledger.get_run(res.run_id)
    assert run.code_version and run.params["rows"] == 100 and run.status == "succeeded"


def test_sigkill_worker_mid_step_is_retried_and_outputs_match(tmp_path: Path) -> None:
    expected = _clean_run(tmp_path)
    signals = tmp_path / "signals"
    signals.mkdir()
    bus = EventBus()
    lost: list[float] = []
    started: dict[tuple[str, int], float] = {}
    bus.subscribe(lambda e: lost.append(time.monotonic()), kinds={EventKind.WORKER_LOST})
    bus.subscribe(lambda e: started.__setitem__((e.step or "", e.attempt or 0),
                                                time.monotonic()),
                  kinds={EventKind.STEP_STARTED})
    runner = Runner(chain, home=tmp_path / "chaos", workers=2, bus=bus)
    marker = signals / "transform.1.started"
    killed_at: list[float] = []

    def killer() -> None:
        wait_for(marker.exists, what="transform to start")
        killed_at.append(time.monotonic())
        os.kill(int(marker.read_text()), signal.SIGKILL)

    t = threading.Thread(target=killer)
    t.start()
    res = runner.run({"rows": 3000, "signal_dir": str(signals), "slow_step": "transform",
                      "slow_seconds": 2.0})
    t.join()
    assert res.ok, res.failed
    assert res.outputs == expected
    attempts = runner.ledger.attempts(res.run_id, "transform")
    assert [a["status"] for a in attempts] == ["worker_lost", "succeeded"]
    assert attempts[0]["error_type"] == "WorkerLost"
    assert attempts[0]["worker_pid"] != attempts[1]["worker_pid"]
    # the step running beside it on the other worker was not disturbed
    assert [a["status"] for a in runner.ledger.attempts(res.run_id, "side")] == ["succeeded"]
    assert lost and lost[0] - killed_at[0] < 0.5
    assert started[("transform", 2)] - killed_at[0] < 0.5
    assert len(runner.ledger.commits(res.run_id)) == len(chain.steps)


def test_timeout_stops_a_hung_step_and_skips_downstream(home: Path) -> None:
    bus = EventBus()
    timed_out: list[int | None] = []
    bus.subscribe(lambda e: timed_out.append(e.attempt), kinds={EventKind.STEP_TIMED_OUT})
    r = Runner(hang, home=home, workers=1, bus=bus)
    t0 = time.monotonic()
    res = r.run()
    assert time.monotonic() - t0 < 5
    assert res.status == "failed" and "timeout" in res.failed["stuck"]
    assert res.skipped == ("after_stuck",)
    assert timed_out == [1, 2]
    pids = [a["worker_pid"] for a in r.ledger.attempts(res.run_id, "stuck")]
    for pid in pids:  # the hung workers were really stopped
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    statuses = {s["step"]: s["status"] for s in r.ledger.steps(res.run_id)}
    assert statuses == {"stuck": "failed", "after_stuck": "upstream_failed"}


def test_retry_predicate_and_failure_isolation(home: Path) -> None:
    r = Runner(flaky, home=home, workers=2)
    res = r.run()
    assert res.status == "failed"
    assert set(res.failed) == {"fatal"} and "ValueError" in res.failed["fatal"]
    assert res.skipped == ("after_fatal",)
    assert "independent" in res.outputs and "wobbly" in res.outputs
    wob = r.ledger.attempts(res.run_id, "wobbly")
    assert [a["status"] for a in wob] == ["failed", "failed", "succeeded"]
    assert len(r.ledger.attempts(res.run_id, "fatal")) == 1  # ValueError is not retryable
    kinds = [e["kind"] for e in r.ledger.events(res.run_id)]
    assert kinds.count("step_retrying") == 2 and "step_failed" in kinds


def _runner_cmd(home: Path, signals: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "reliability", "run", "--pipeline", "sample_pipelines:chain",
            "--home", str(home), "--workers", "2", "-q", "--no-sla", "-p", "rows=3000",
            "-p", f"signal_dir={signals}", *extra]


def test_sigkill_runner_then_resume_is_byte_identical(tmp_path: Path) -> None:
    expected = _clean_run(tmp_path)
    home, signals = tmp_path / "h", tmp_path / "signals"
    signals.mkdir()
    args = ["-p", "slow_step=sink", "-p", "slow_seconds=30"]
    proc = subprocess.Popen(_runner_cmd(home, signals, args), env=subprocess_env(), cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for((signals / "sink.1.started").exists, what="sink to start")
        worker_pid = int((signals / "sink.1.started").read_text())
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
        proc.wait()
    # the orphaned worker dies with its runner (PR_SET_PDEATHSIG)
    wait_for(lambda: not _alive(worker_pid), timeout=5, what="orphan worker to exit")
    led = Ledger(home / "ledger.db")
    run = led.list_runs()[0]
    assert run.status == "running"
    committed_before = {c["step"] for c in led.commits(run.run_id)}
    assert committed_before == {"source", "transform", "side"}
    led.close()
    # re-running the same command (without the slow step) resumes the same run
    done = subprocess.run(
        [sys.executable, "-m", "reliability", "resume", run.run_id, "--pipeline",
         "sample_pipelines:chain", "--home", str(home), "-q", "--no-sla"],
        env=subprocess_env(), cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr + done.stdout
    led = Ledger(home / "ledger.db")
    steps = {s["step"]: s for s in led.steps(run.run_id)}
    assert {k: v["output_hash"] for k, v in steps.items()} == expected
    commits = [c["step"] for c in led.commits(run.run_id)]
    assert sorted(commits) == sorted(chain.steps)  # nothing committed twice
    sink = led.attempts(run.run_id, "sink")
    assert [a["status"] for a in sink] == ["lost", "succeeded"]
    assert led.get_run(run.run_id).status == "succeeded"
    led.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_ctrl_c_cancels_and_rerunning_the_same_command_resumes(tmp_path: Path) -> None:
    home, signals = tmp_path / "h", tmp_path / "signals"
    signals.mkdir()
    cmd = _runner_cmd(home, signals, ["-p", "slow_step=side", "-p", "slow_seconds=30"])
    proc = subprocess.Popen(cmd, env=subprocess_env(), cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for((signals / "side.1.started").exists, what="side to start")
        side_pid = int((signals / "side.1.started").read_text())
        proc.send_signal(signal.SIGINT)  # Ctrl-C: clean cancel
        assert proc.wait(10) == 130
    finally:
        proc.kill()
        proc.wait()
    assert not _alive(side_pid)  # the running step was stopped
    led = Ledger(home / "ledger.db")
    (run,) = led.list_runs()
    assert run.status == "cancelled"
    assert {s["step"]: s["status"] for s in led.steps(run.run_id)}["side"] == "cancelled"
    led.close()
    again = subprocess.run(cmd, env=subprocess_env(), cwd=tmp_path, capture_output=True, text=True,
                           timeout=120, check=False)
    assert again.returncode == 0, again.stderr
    assert "(resumed)" in again.stdout and run.run_id in again.stdout
    led = Ledger(home / "ledger.db")
    assert len(led.list_runs()) == 1 and led.get_run(run.run_id).status == "succeeded"
    assert [a["status"] for a in led.attempts(run.run_id, "side")] == ["cancelled", "succeeded"]
    assert [a["status"] for a in led.attempts(run.run_id, "source")] == ["succeeded"]
    led.close()


def test_cancel_from_another_thread_then_resume_by_run_id(tmp_path: Path) -> None:
    import datetime as dt

    from reliability import DataInterval

    signals = tmp_path / "signals"
    signals.mkdir()
    runner = Runner(chain, home=tmp_path / "h", workers=2)
    berlin = dt.timezone(dt.timedelta(hours=1))
    interval = DataInterval(dt.datetime(2026, 3, 1, tzinfo=berlin),
                            dt.datetime(2026, 3, 2, tzinfo=berlin))

    def cancel_when_sink_starts() -> None:
        wait_for((signals / "sink.1.started").exists, what="sink to start")
        runner.cancel()

    t = threading.Thread(target=cancel_when_sink_starts)
    t.start()
    params = {"signal_dir": str(signals), "slow_step": "sink", "slow_seconds": 30}
    first = runner.run(params, interval=interval, run_id="chain-fixed-id")
    t.join()
    assert first.status == "cancelled" and first.run_id == "chain-fixed-id"
    rec = runner.ledger.get_run("chain-fixed-id")
    assert rec.interval_start == "2026-02-28T23:00:00+00:00"  # one spelling: UTC
    again = runner.run(params, interval=interval, run_id="chain-fixed-id")
    assert again.ok and again.resumed
    assert [a["status"] for a in runner.ledger.attempts("chain-fixed-id", "sink")] == [
        "cancelled", "succeeded"]
    third = runner.run(params, interval=interval, run_id="chain-fixed-id")
    assert third.ok and third.outputs == again.outputs  # a finished run is not redone
    assert len(runner.ledger.commits("chain-fixed-id")) == len(chain.steps)


def _listening_fds() -> int:
    import socket as so

    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            s = so.socket(fileno=int(name))
        except OSError:
            continue
        try:
            count += s.getsockopt(so.SOL_SOCKET, so.SO_ACCEPTCONN)
        except OSError:
            pass
        finally:
            s.detach()
    return count


def test_workers_do_not_keep_the_runners_listening_sockets(home: Path) -> None:
    import socket as so

    from reliability import Pipeline

    probe = Pipeline("probe")

    @probe.step
    def inherited() -> int:
        return _listening_fds()

    with so.create_server(("127.0.0.1", 0)):  # e.g. a metrics exporter or an embedded proxy
        assert _listening_fds() >= 1
        runner = Runner(probe, home=home, workers=1)
        res = runner.run()
    assert res.ok
    assert runner.store.load(res.outputs["inherited"], "json") == 0
