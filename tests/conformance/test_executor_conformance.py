"""Executor conformance: retry with backoff, timeouts that really stop the attempt, a
SIGKILLed process -> worker_lost + retry, cancel, exactly-once commit, resume after the
runner dies, outputs byte-identical to a clean local run.

Parametrized over every executor (see conftest.py); the tests use only the Runner's public
API, the ledger and real processes and signals.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from conformance_pipeline import pipeline, timed
from helpers import subprocess_env, wait_for

from reliability import Runner

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def clean_outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Digests of a clean run on the local executor: every executor must match them."""
    home = tmp_path_factory.mktemp("clean")
    runner = Runner(pipeline, home=home, workers=2)
    try:
        res = runner.run()
        assert res.ok, res.failed
        return dict(res.outputs)
    finally:
        runner.close()
        runner.ledger.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def _statuses(runner: Runner, run_id: str, step: str) -> list[str]:
    return [a["status"] for a in runner.ledger.attempts(run_id, step)]


def test_retry_with_backoff(make_runner: Callable[..., Runner], home: Path,
                            clean_outputs: dict[str, str]) -> None:
    runner = make_runner(pipeline, home)
    res = runner.run({"fail_step": "digest", "fail_times": 2})
    assert res.ok, res.failed
    attempts = runner.ledger.attempts(res.run_id, "digest")
    assert [a["status"] for a in attempts] == ["failed", "failed", "succeeded"]
    assert [a["error_type"] for a in attempts[:2]] == ["Flaky", "Flaky"]
    # backoff 0.3 s then 0.6 s (no jitter): each retry waits at least its delay
    gaps = [attempts[i + 1]["started_at"] - attempts[i]["ended_at"] for i in range(2)]
    assert gaps[0] >= 0.3 - 0.02 and gaps[1] >= 0.6 - 0.02, gaps
    retrying = runner.ledger.events(res.run_id, "step_retrying")
    assert [e["details"]["next_attempt"] for e in retrying] == [2, 3]
    assert res.outputs == clean_outputs  # retries change nothing in the bytes


def test_a_step_past_its_timeout_is_stopped_and_retried(
        make_runner: Callable[..., Runner], home: Path, tmp_path: Path) -> None:
    signals = tmp_path / "signals"
    signals.mkdir()
    runner = make_runner(timed, home)
    res = runner.run({"signal_dir": str(signals), "slow_step": "stuck", "slow_seconds": 120})
    assert res.ok, res.failed
    assert _statuses(runner, res.run_id, "stuck") == ["timed_out", "succeeded"]
    first_pid = int((signals / "stuck.1.pid").read_text())
    # the timed-out attempt's process was really stopped, not left sleeping
    wait_for(lambda: not _alive(first_pid), timeout=10, what="timed-out attempt to stop")
    (ev,) = runner.ledger.events(res.run_id, "step_timed_out")
    assert ev["step"] == "stuck" and ev["attempt"] == 1


def test_sigkill_of_the_process_running_an_attempt_is_worker_lost_and_retried(
        make_runner: Callable[..., Runner], home: Path, tmp_path: Path,
        clean_outputs: dict[str, str]) -> None:
    signals = tmp_path / "signals"
    signals.mkdir()
    marker = signals / "digest.1.pid"
    killed: list[int] = []

    def killer() -> None:
        wait_for(marker.exists, timeout=120, what="digest's first attempt")
        pid = int(marker.read_text())
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    runner = make_runner(pipeline, home)
    res = runner.run({"signal_dir": str(signals), "slow_step": "digest", "slow_seconds": 60})
    t.join(5)
    assert killed, "the attempt was never seen running"
    assert res.ok, res.failed
    attempts = runner.ledger.attempts(res.run_id, "digest")
    assert [a["status"] for a in attempts] == ["worker_lost", "succeeded"]
    assert attempts[0]["error_type"] == "WorkerLost"
    lost = runner.ledger.events(res.run_id, "worker_lost")
    assert [(e["step"], e["attempt"]) for e in lost] == [("digest", 1)]
    assert res.outputs == clean_outputs


def test_cancel_stops_the_run_and_resume_finishes_it(
        make_runner: Callable[..., Runner], home: Path, tmp_path: Path,
        clean_outputs: dict[str, str]) -> None:
    signals = tmp_path / "signals"
    signals.mkdir()
    marker = signals / "stats.1.pid"
    runner = make_runner(pipeline, home)

    def cancel_when_running() -> None:
        wait_for(marker.exists, timeout=120, what="stats to start")
        runner.cancel()

    t = threading.Thread(target=cancel_when_running, daemon=True)
    t.start()
    res = runner.run({"signal_dir": str(signals), "slow_step": "stats", "slow_seconds": 60})
    t.join(5)
    assert res.status == "cancelled"
    assert "cancelled" in _statuses(runner, res.run_id, "stats")
    pid = int(marker.read_text())
    wait_for(lambda: not _alive(pid), timeout=10, what="the cancelled attempt to stop")
    assert runner.ledger.get_run(res.run_id).status == "cancelled"
    again = runner.resume(res.run_id)
    assert again.ok and again.resumed, again.failed
    assert again.outputs == clean_outputs


def test_each_step_commits_exactly_once(make_runner: Callable[..., Runner], home: Path,
                                        clean_outputs: dict[str, str]) -> None:
    runner = make_runner(pipeline, home)
    res = runner.run({"fail_step": "report", "fail_times": 1})
    assert res.ok, res.failed
    commits = runner.ledger.commits(res.run_id)
    assert sorted(c["step"] for c in commits) == sorted(pipeline.steps)
    assert {c["step"]: c["output_hash"] for c in commits} == clean_outputs
    objects = [p for p in (home / "store" / "objects").rglob("*") if p.is_file()]
    assert sorted(p.name for p in objects) == sorted(set(clean_outputs.values()))
    # nothing is left staged once the run ended
    assert not any(p.is_file() for p in (home / "store" / "staging").rglob("*"))


_DRIVER = """
import sys
from reliability import Runner
from conformance_pipeline import pipeline
runner = Runner(pipeline, home=sys.argv[1], executor=sys.argv[2], workers=2)
runner.run({"signal_dir": sys.argv[3], "slow_step": "report", "slow_seconds": 120},
           run_id="conformance-resume")
"""


def test_resume_after_the_runner_dies(make_runner: Callable[..., Runner], home: Path,
                                      tmp_path: Path, executor_name: str,
                                      clean_outputs: dict[str, str]) -> None:
    signals = tmp_path / "signals"
    signals.mkdir()
    log = (tmp_path / "driver.log").open("wb")
    env = subprocess_env()
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env["PYTHONPATH"]])
    proc = subprocess.Popen([sys.executable, "-c", _DRIVER, str(home), executor_name,
                             str(signals)], env=env, cwd=tmp_path, stdout=log, stderr=log)
    try:
        wait_for(lambda: (signals / "report.1.pid").exists() or proc.poll() is not None,
                 timeout=180, what="report to start")
        assert proc.poll() is None, (tmp_path / "driver.log").read_text()
        proc.send_signal(signal.SIGKILL)  # the runner dies; the ledger is the resume point
        proc.wait(10)
    finally:
        proc.kill()
        proc.wait()
        log.close()
    runner = make_runner(pipeline, home)
    rec = runner.ledger.get_run("conformance-resume")
    assert rec.status == "running"  # its runner died without a word
    res = runner.resume("conformance-resume")
    assert res.ok and res.resumed, res.failed
    assert res.outputs == clean_outputs
    commits = runner.ledger.commits("conformance-resume")
    assert sorted(c["step"] for c in commits) == sorted(pipeline.steps)  # none twice
    assert _statuses(runner, "conformance-resume", "report") == ["lost", "succeeded"]


def test_outputs_are_byte_identical_to_a_clean_local_run(
        make_runner: Callable[..., Runner], home: Path, clean_outputs: dict[str, str]) -> None:
    runner = make_runner(pipeline, home)
    res = runner.run()
    assert res.ok, res.failed
    assert res.outputs == clean_outputs
    for step, digest in res.outputs.items():
        assert runner.store.intact(digest), step
