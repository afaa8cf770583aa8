"""On Dask, a step whose last missing input is a running attempt's output is queued behind
that attempt on its worker and starts the moment the input is committed to the store, with
no round trip through the run loop. It never starts after a failed, timed-out or lost input
attempt; and a runner that dies after it started but before it recorded the input's commit
resumes to the same outputs, each step committed once."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import subprocess_env
from pydantic import BaseModel

from reliability import Pipeline, Retry, StepContext
from reliability.runner import Runner

pytest.importorskip("distributed")
pytestmark = pytest.mark.integration


class Marks(BaseModel):
    marks: str
    fail: str = ""  # "flaky": the input step fails once (retried); "fatal": for good
    slow: float = 0.0  # the input step's first attempt sleeps this long


class Flaky(RuntimeError):
    pass


def _mark(ctx: StepContext, marks: str) -> None:
    Path(marks, f"{ctx.step}.{ctx.attempt}.{os.getpid()}").touch()


def source(ctx: StepContext, params: Marks) -> list[int]:
    _mark(ctx, params.marks)
    ctx.emit("produced", n=10)
    if params.fail == "flaky" and ctx.attempt == 1:
        raise Flaky("once")
    if params.fail == "fatal":
        raise ValueError("never")
    if params.slow and ctx.attempt == 1:
        time.sleep(params.slow)
    return list(range(10))


def double(ctx: StepContext, params: Marks, source: list[int]) -> list[int]:
    _mark(ctx, params.marks)
    return [2 * x for x in source]


def total(ctx: StepContext, params: Marks, double: list[int]) -> int:
    _mark(ctx, params.marks)
    return sum(double)


def _pipeline(timeout: float) -> Pipeline:
    p = Pipeline("queued-dependents", params=Marks)
    p.add(source, retry=Retry(attempts=3, backoff=0, retry_on=(Flaky,)), timeout=timeout)
    p.add(double, retry=Retry(attempts=3, backoff=0))
    p.add(total, retry=Retry(attempts=3, backoff=0))
    return p


pipe = _pipeline(timeout=20)
timed = _pipeline(timeout=2)  # source's slow first attempt is killed at its timeout


def _runs(marks: Path) -> list[tuple[str, int, int]]:
    return sorted((s, int(a), int(p)) for s, a, p in
                  (m.name.split(".") for m in marks.iterdir()))


def _attempts(runner: Runner, run_id: str, step: str) -> list[tuple[int, str]]:
    return [(a["attempt"], a["status"]) for a in runner.ledger.attempts(run_id, step)]


@pytest.fixture
def marks(tmp_path: Path) -> Path:
    d = tmp_path / "marks"
    d.mkdir()
    return d


def test_a_chain_runs_each_step_on_the_worker_of_its_input(tmp_path: Path,
                                                          marks: Path) -> None:
    runner = Runner(pipe, home=tmp_path / "home", executor="dask", workers=2)
    res = runner.run({"marks": str(marks)})
    assert res.ok, res.failed
    assert runner.store.load(res.outputs["total"], "json") == 90
    runs = _runs(marks)
    assert [(s, a) for s, a, _ in runs] == [("double", 1), ("source", 1), ("total", 1)]
    assert len({p for _, _, p in runs}) == 1  # queued behind its input, on its worker
    steps = {s: runner.ledger.attempts(res.run_id, s)[0] for s in pipe.steps}
    # each started once its input was committed, and the ledger says so in order
    assert steps["source"]["ended_at"] <= steps["double"]["started_at"]
    assert steps["double"]["ended_at"] <= steps["total"]["started_at"]
    assert {s: a["status"] for s, a in steps.items()} == dict.fromkeys(pipe.steps,
                                                                        "succeeded")


@pytest.mark.parametrize("fail", ["flaky", "fatal", "timeout"])
def test_a_step_queued_behind_an_attempt_that_does_not_commit_never_starts(
        tmp_path: Path, marks: Path, fail: str) -> None:
    slow = fail == "timeout"
    runner = Runner(timed if slow else pipe, home=tmp_path / "home", executor="dask",
                    workers=2)
    res = runner.run({"marks": str(marks), "fail": "" if slow else fail,
                      "slow": 30.0 if slow else 0.0})
    runs = [(s, a) for s, a, _ in _runs(marks)]
    if fail == "fatal":
        assert res.status == "failed"
        assert runs == [("source", 1)]  # nothing queued behind it ever ran
        assert _attempts(runner, res.run_id, "double") == []
        assert _attempts(runner, res.run_id, "total") == []
        return
    assert res.ok, res.failed
    assert runs == [("double", 1), ("source", 1), ("source", 2), ("total", 1)]
    assert _attempts(runner, res.run_id, "source") == [
        (1, "failed" if fail == "flaky" else "timed_out"), (2, "succeeded")]
    # numbered from 1 with no gap: the attempts queued behind source 1 never existed
    assert _attempts(runner, res.run_id, "double") == [(1, "succeeded")]
    assert _attempts(runner, res.run_id, "total") == [(1, "succeeded")]
    assert runner.store.load(res.outputs["total"], "json") == 90


_DRIVER = """
import os, signal, sys, time
from pathlib import Path
from reliability import EventKind, Runner
from test_dask_queued_dependents import pipe

marks = Path(sys.argv[2])
runner = Runner(pipe, home=sys.argv[1], executor="dask", workers=2)

def die_before_the_commit_is_recorded(ev):
    # the loop publishes the step's own events before it records its commit: hold it
    # there until the step queued behind it has started, then die
    if ev.step == "source" and ev.kind == EventKind.CUSTOM:
        deadline = time.monotonic() + 60
        while not any(m.name.startswith("double.") for m in marks.iterdir()):
            if time.monotonic() > deadline:
                break
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGKILL)

runner.bus.subscribe(die_before_the_commit_is_recorded)
runner.run({"marks": str(marks), "slow": 0.0}, run_id="queued-crash")
"""


def test_a_runner_that_dies_after_a_dependent_started_but_before_recording_its_input(
        tmp_path: Path, marks: Path) -> None:
    home = tmp_path / "home"
    log = (tmp_path / "driver.log").open("wb")
    env = subprocess_env()
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env["PYTHONPATH"]])
    proc = subprocess.Popen([sys.executable, "-c", _DRIVER, str(home), str(marks)],
                            env=env, cwd=tmp_path, stdout=log, stderr=log,
                            start_new_session=True)
    try:
        proc.wait(180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        # the LocalCluster's workers lost their runner: stop them as a crash would
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "driver.log").read_text()
    assert any(m.name.startswith("double.1.") for m in marks.iterdir())
    runner = Runner(pipe, home=home, executor="dask", workers=2)
    rid = "queued-crash"
    # the dependent step ran, but the ledger never claimed its input's commit
    assert runner.ledger.commits(rid) == []
    assert runner.ledger.get_run(rid).status == "running"
    res = runner.resume(rid)
    assert res.ok and res.resumed, res.failed
    assert runner.store.load(res.outputs["total"], "json") == 90
    commits = runner.ledger.commits(rid)
    assert sorted(c["step"] for c in commits) == sorted(pipe.steps)  # each once
    assert _attempts(runner, rid, "source") == [(1, "lost"), (2, "succeeded")]
    assert _attempts(runner, rid, "double")[-1] == (2, "succeeded")
    assert all(runner.store.intact(h) for h in res.outputs.values())
    assert not any(p.is_file() for p in (home / "store" / "staging").rglob("*"))
