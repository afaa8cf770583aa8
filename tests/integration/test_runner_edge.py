"""Edge cases of the run loop: cancellation races, dead workers, staging, resume, run ids."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_for
from pydantic import BaseModel
from sample_pipelines import chain

from reliability import Event, EventBus, EventKind, Pipeline, Retry, Runner, StepContext
from reliability.errors import RunError

pytestmark = pytest.mark.integration


class Boom(RuntimeError):
    pass


def _cancelled_at_sink(tmp_path: Path, run_id: str) -> tuple[Runner, Any]:
    """A run of `chain` cancelled once its last step started: the rest is committed."""
    signals = tmp_path / "signals"
    signals.mkdir()
    runner = Runner(chain, home=tmp_path / "h", workers=2)
    params = {"rows": 500, "signal_dir": str(signals), "slow_step": "sink",
              "slow_seconds": 30}

    def cancel_when_sink_starts() -> None:
        wait_for((signals / "sink.1.started").exists, what="sink to start")
        runner.cancel()

    t = threading.Thread(target=cancel_when_sink_starts)
    t.start()
    first = runner.run(params, run_id=run_id)
    t.join()
    assert first.status == "cancelled"
    return runner, first


def test_resume_rehashes_committed_outputs_and_redoes_a_corrupt_one(tmp_path: Path) -> None:
    runner, first = _cancelled_at_sink(tmp_path, "chain-torn")
    obj = runner.store.path(first.outputs["source"])
    good = obj.read_bytes()
    obj.write_bytes(good[: len(good) // 2])  # a torn write: right name, wrong bytes
    again = runner.resume("chain-torn")
    assert again.ok, again.failed
    assert again.outputs["source"] == first.outputs["source"]
    assert obj.read_bytes() == good and runner.store.verify(first.outputs["source"])
    aside = list((runner.store.quarantine / "corrupt").iterdir())
    assert len(aside) == 1 and aside[0].read_bytes() == good[: len(good) // 2]
    statuses = [a["status"] for a in runner.ledger.attempts("chain-torn", "source")]
    assert statuses == ["succeeded", "succeeded"]  # redone, not trusted
    untouched = [a["status"] for a in runner.ledger.attempts("chain-torn", "transform")]
    assert untouched == ["succeeded"]  # intact outputs are not redone

def test_a_new_run_id_that_prefixes_an_old_one_starts_a_new_run(home: Path) -> None:
    runner = Runner(chain, home=home, workers=2)
    old = runner.run({"rows": 10}, run_id="chain-nightly-0001")
    assert old.ok
    new = runner.run({"rows": 20}, run_id="chain-nightly")
    assert new.run_id == "chain-nightly" and new.ok and not new.resumed
    assert runner.ledger.get_run("chain-nightly").params["rows"] == 20


def test_resume_recommits_a_step_whose_object_vanished(tmp_path: Path) -> None:
    runner, first = _cancelled_at_sink(tmp_path, "chain-gc")
    runner.store.path(first.outputs["source"]).unlink()  # e.g. a store clean-up ran
    again = runner.resume("chain-gc")
    assert again.ok, again.failed
    assert again.outputs == {**first.outputs, "sink": again.outputs["sink"]}
    assert runner.store.verify(again.outputs["source"])
    commits = [c["step"] for c in runner.ledger.commits("chain-gc")]
    assert sorted(commits) == sorted(chain.steps)  # still one commit row per step
    assert [a["status"] for a in runner.ledger.attempts("chain-gc", "source")] == [
        "succeeded", "succeeded"]


scratch = Pipeline("scratch")


@scratch.step
def left(ctx: StepContext) -> Path:
    out = ctx.staging_dir / "model.bin"
    out.write_bytes(b"left")
    (ctx.staging_dir.parent / "left.wrote").touch()
    wait_for((ctx.staging_dir.parent / "right.wrote").exists, timeout=10, what="right")
    return out


@scratch.step
def right(ctx: StepContext) -> Path:
    wait_for((ctx.staging_dir.parent / "left.wrote").exists, timeout=10, what="left")
    out = ctx.staging_dir / "model.bin"
    out.write_bytes(b"right")
    (ctx.staging_dir.parent / "right.wrote").touch()
    return out


@scratch.step(retry=Retry(attempts=2, backoff=0))
def partial(ctx: StepContext) -> list[str]:
    seen = sorted(p.name for p in ctx.staging_dir.iterdir())
    if ctx.attempt == 1:
        (ctx.staging_dir / "part-0.bin").write_bytes(b"half")
        raise Boom("died half way")
    return seen


def test_each_attempt_gets_its_own_staging_dir(home: Path) -> None:
    # two steps writing the same scratch name at once must not see each other's file, and
    # a retry must not find (and commit) what the failed attempt left behind
    runner = Runner(scratch, home=home, workers=3)
    res = runner.run()
    assert res.ok, res.failed
    assert runner.store.load(res.outputs["left"], "file").read_bytes() == b"left"
    assert runner.store.load(res.outputs["right"], "file").read_bytes() == b"right"
    assert runner.store.load(res.outputs["partial"], "json") == []
    assert not (runner.store.staging / res.run_id).exists()


gated = Pipeline("gated")


@gated.step(retry=Retry(attempts=3, backoff=0))
def wob(ctx: StepContext) -> int:
    if ctx.attempt == 1:
        ctx.emit("fault_injected", fault="exception")
        raise Boom("transient")
    return ctx.attempt


@gated.step
def down(wob: int) -> int:
    return wob + 1


def test_cancel_racing_a_retryable_failure_is_not_a_final_failure(home: Path) -> None:
    bus = EventBus()
    runner = Runner(gated, home=home, workers=1, bus=bus)
    # the cancel lands while the failed attempt's result is being handled (as a signal can)
    bus.subscribe(lambda e: runner.cancel(), kinds={EventKind.FAULT_INJECTED})
    res = runner.run(run_id="gated-1")
    assert res.status == "cancelled"
    assert res.failed == {} and res.skipped == ()
    steps = {s["step"]: s["status"] for s in runner.ledger.steps("gated-1")}
    assert steps == {"wob": "cancelled", "down": "pending"}
    kinds = [e["kind"] for e in runner.ledger.events("gated-1")]
    assert "step_failed" not in kinds and "step_cancelled" in kinds
    runner.close()
    again = Runner(gated, home=home, workers=1).resume("gated-1")
    assert again.ok and again.outputs.keys() == {"wob", "down"}


slow_retry = Pipeline("slow_retry")


@slow_retry.step(retry=Retry(attempts=2, backoff=30, jitter=0))
def once(ctx: StepContext) -> int:
    if ctx.attempt == 1:
        raise Boom("first attempt fails")
    return 1


def test_cancel_while_a_retry_is_pending(home: Path) -> None:
    bus = EventBus()
    runner = Runner(slow_retry, home=home, workers=1, bus=bus)
    cancelled: list[Event] = []
    bus.subscribe(lambda e: runner.cancel(), kinds={EventKind.STEP_RETRYING})
    bus.subscribe(cancelled.append, kinds={EventKind.STEP_CANCELLED})
    t0 = time.monotonic()
    res = runner.run(run_id="slow-1")
    assert time.monotonic() - t0 < 10  # the 30 s backoff did not hold the cancel
    assert res.status == "cancelled"
    assert runner.ledger.steps("slow-1")[0]["status"] == "cancelled"  # not 'running'
    assert [(e.step, e.attempt) for e in cancelled] == [("once", 1)]
    again = runner.resume("slow-1")
    assert again.ok
    attempts = runner.ledger.attempts("slow-1", "once")
    assert [(a["attempt"], a["status"]) for a in attempts] == [(1, "failed"), (2, "succeeded")]


pair = Pipeline("pair")


@pair.step
def first() -> int:
    return 1


@pair.step
def second(first: int) -> int:
    return first + 1


def _wait_dead(pid: int) -> None:
    def gone() -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().split()[2] in "ZX"
        except OSError:
            return True

    wait_for(gone, timeout=5, what=f"pid {pid} to die")


def test_an_idle_worker_dead_before_its_task_arrives_keeps_the_audit_trail(home: Path) -> None:
    bus = EventBus()

    def kill_idle_worker(ev: Event) -> None:  # dies after its result, before the next task
        if ev.step == "first":
            os.kill(int(ev.details["worker_pid"]), signal.SIGKILL)
            _wait_dead(int(ev.details["worker_pid"]))

    bus.subscribe(kill_idle_worker, kinds={EventKind.STEP_SUCCEEDED})
    runner = Runner(pair, home=home, workers=1, bus=bus)
    res = runner.run(run_id="pair-1")
    assert res.ok, res.failed
    attempts = runner.ledger.attempts("pair-1", "second")
    assert [(a["attempt"], a["status"]) for a in attempts] == [(1, "worker_lost"),
                                                                 (2, "succeeded")]
    assert attempts[0]["worker_pid"] != attempts[1]["worker_pid"]
    lost = runner.ledger.events("pair-1", "worker_lost")
    assert [(e["step"], e["attempt"]) for e in lost] == [("second", 1)]


noisy = Pipeline("noisy")


@noisy.step
def emits(ctx: StepContext) -> int:
    ctx.emit("fault_injected", fault="latency", callback=lambda: None)  # not picklable
    return 7


def test_an_unpicklable_event_detail_does_not_kill_the_worker(home: Path) -> None:
    runner = Runner(noisy, home=home, workers=1)
    res = runner.run(run_id="noisy-1")
    assert res.ok, res.failed
    assert [a["status"] for a in runner.ledger.attempts("noisy-1")] == ["succeeded"]
    (ev,) = runner.ledger.events("noisy-1", "fault_injected")
    assert ev["details"]["fault"] == "latency" and "lambda" in ev["details"]["callback"]


def test_a_second_sigint_during_shutdown_stays_with_the_runner(tmp_path: Path) -> None:
    signals = tmp_path / "signals"
    signals.mkdir()
    bus = EventBus()
    runner = Runner(chain, home=tmp_path / "h", workers=2, bus=bus)
    escaped: list[int] = []
    bus.subscribe(lambda e: os.kill(os.getpid(), signal.SIGINT),
                  kinds={EventKind.RUN_CANCELLED})  # an impatient second Ctrl-C

    def ctrl_c() -> None:
        wait_for((signals / "sink.1.started").exists, what="sink to start")
        os.kill(os.getpid(), signal.SIGINT)

    old = signal.signal(signal.SIGINT, lambda s, f: escaped.append(s))
    try:
        t = threading.Thread(target=ctrl_c)
        t.start()
        res = runner.run({"signal_dir": str(signals), "slow_step": "sink",
                          "slow_seconds": 30})
        t.join()
        time.sleep(0.05)  # let any pending Python-level handler run
    finally:
        signal.signal(signal.SIGINT, old)
    assert res.status == "cancelled"
    assert escaped == []
    assert not (runner.store.staging / res.run_id).exists()


def test_two_runners_in_one_process_never_share_a_run(tmp_path: Path) -> None:
    signals = tmp_path / "signals"
    signals.mkdir()
    home = tmp_path / "h"
    first_runner = Runner(chain, home=home, workers=2)
    params = {"signal_dir": str(signals), "slow_step": "sink", "slow_seconds": 2}
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(first_runner.run(params, run_id="c-1")))
    t.start()
    try:
        wait_for((signals / "sink.1.started").exists, what="sink to start")
        second_runner = Runner(chain, home=home, workers=2)
        with pytest.raises(RunError, match="never two runners"):
            second_runner.resume("c-1")
        second_runner.close()
    finally:
        t.join()
    assert out and getattr(out[0], "ok", False)
    assert [a["status"] for a in first_runner.ledger.attempts("c-1", "sink")] == ["succeeded"]


def test_cancel_before_the_loop_starts_is_not_lost(home: Path) -> None:
    runner = Runner(pair, home=home, workers=1,
                    before_run=[lambda r, run_id: r.cancel()])
    res = runner.run(run_id="pair-early")
    assert res.status == "cancelled" and res.outputs == {}


class CounterParams(BaseModel):
    counter: str
    succeed_on: int


flaky = Pipeline("flaky-budget", params=CounterParams)


@flaky.step(retry=Retry(attempts=2, backoff=0, jitter=0))
def wobbly(params: CounterParams) -> int:
    path = Path(params.counter)
    n = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(n))
    if n < params.succeed_on:
        raise Boom(f"try {n}")
    return n


def test_resuming_a_failed_run_gives_the_full_retry_budget_again(tmp_path: Path) -> None:
    runner = Runner(flaky, home=tmp_path / "h", workers=1)
    params = {"counter": str(tmp_path / "count"), "succeed_on": 4}
    first = runner.run(params, run_id="budget")
    assert first.status == "failed"
    assert [a["status"] for a in runner.ledger.attempts("budget", "wobbly")] == [
        "failed", "failed"]
    again = runner.resume("budget")  # try 3 fails, its retry (try 4) succeeds
    assert again.ok, again.failed
    attempts = runner.ledger.attempts("budget", "wobbly")
    assert [(a["attempt"], a["status"]) for a in attempts] == [
        (1, "failed"), (2, "failed"), (3, "failed"), (4, "succeeded")]


def test_runners_in_parallel_threads_each_see_their_own_worker_die(tmp_path: Path) -> None:
    """Workers forked by one runner must not hold another runner's worker pipes open."""
    results: dict[str, object] = {}
    delays: dict[str, float] = {}

    def one(name: str) -> None:
        signals = tmp_path / name / "signals"
        signals.mkdir(parents=True)
        bus = EventBus()
        killed: list[float] = []
        bus.subscribe(lambda e: delays.setdefault(name, time.monotonic() - killed[0]),
                      kinds={EventKind.WORKER_LOST})
        runner = Runner(chain, home=tmp_path / name / "home", workers=3, bus=bus)
        marker = signals / "transform.1.started"

        def killer() -> None:
            wait_for(lambda: marker.exists() and marker.read_text() != "",
                     what=f"{name} transform to start")
            killed.append(time.monotonic())
            os.kill(int(marker.read_text()), signal.SIGKILL)

        k = threading.Thread(target=killer)
        k.start()
        results[name] = runner.run({"rows": 100, "signal_dir": str(signals),
                                    "slow_step": "transform", "slow_seconds": 5.0})
        k.join()

    threads = [threading.Thread(target=one, args=(n,)) for n in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == ["a", "b", "c"]
    assert all(r.ok for r in results.values())  # type: ignore[attr-defined]
    assert sorted(delays) == ["a", "b", "c"]
    assert max(delays.values()) < 1.0, delays  # not when another runner's workers exit


def test_a_cancel_while_the_run_is_starting_is_kept_for_it(home: Path) -> None:
    class StartsSlowly(Runner):
        def _execute(self, rec: Any, params: Any, *, resumed: bool) -> Any:
            self.cancel()  # as if another thread cancelled while the run was being created
            return super()._execute(rec, params, resumed=resumed)

    runner = StartsSlowly(chain, home=home, workers=2)
    res = runner.run({"rows": 10}, run_id="early-cancel")
    assert res.status == "cancelled"
    assert runner.ledger.attempts("early-cancel") == []  # no step started
    idle = Runner(chain, home=home, workers=2)
    idle.cancel()  # nothing in progress: nothing to keep
    again = idle.resume("early-cancel")
    assert again.ok and set(again.outputs) == set(chain.steps)


def test_a_signal_after_the_last_step_is_handed_to_the_caller(home: Path) -> None:
    """Nothing is left to cancel: the caller's own handler must see the signal."""
    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    bus = EventBus()
    bus.subscribe(lambda ev: os.kill(os.getpid(), signal.SIGTERM),
                  kinds={EventKind.RUN_SUCCEEDED})  # published after the last step ended
    try:
        res = Runner(chain, home=home, workers=2, bus=bus).run({"rows": 10})
        wait_for(lambda: received == [signal.SIGTERM], timeout=5, what="the late SIGTERM")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert res.ok  # the run itself was complete and is recorded as such


@pytest.mark.parametrize("bad", ["../../victim", "a/b", "", "-x", "a..b", "x" * 201, "<b>"])
def test_run_ids_that_could_name_other_directories_are_refused(tmp_path: Path,
                                                               bad: str) -> None:
    from reliability.errors import DefinitionError

    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("data")
    runner = Runner(chain, home=tmp_path / "h" / "home", workers=1)
    with pytest.raises(DefinitionError, match="run id"):
        runner.run({"rows": 5}, run_id=bad)
    assert (victim / "keep.txt").read_text() == "data"
    assert runner.ledger.list_runs() == []


wobble = Pipeline("wobble")


@wobble.step
def stamp() -> float:
    return time.time()  # other bytes on every run


@wobble.step
def use(stamp: float) -> list[float]:
    return [stamp]  # not the same object as stamp's


def test_resume_recommits_a_lost_output_of_a_step_that_is_not_deterministic(
        tmp_path: Path) -> None:
    runner = Runner(wobble, home=tmp_path / "h", workers=1)
    first = runner.run(run_id="wobble-1")
    assert first.ok
    runner.store.path(first.outputs["stamp"]).unlink()
    runner.ledger.finish_run("wobble-1", "failed", "pretend the run broke after the loss")
    again = runner.resume("wobble-1")
    assert again.ok and again.outputs["stamp"] != first.outputs["stamp"]
    commits = {c["step"]: c["output_hash"] for c in runner.ledger.commits("wobble-1")}
    assert commits["stamp"] == again.outputs["stamp"]  # one commit row, the new object
    lost = runner.ledger.events("wobble-1", "output_lost")
    assert [e["details"]["output_hash"] for e in lost] == [first.outputs["stamp"]]


def test_a_task_that_never_reached_its_worker_does_not_use_a_retry(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from reliability.runner.pool import WorkerPool

    spawned: list[int] = []
    real_spawn = WorkerPool.spawn

    def spawn_one_dead(self: WorkerPool) -> Any:
        w = real_spawn(self)
        if not spawned:  # the first worker dies before it gets any task
            w.proc.kill()
            w.proc.join()
        spawned.append(w.pid)
        return w

    monkeypatch.setattr(WorkerPool, "spawn", spawn_one_dead)
    runner = Runner(flaky, home=tmp_path / "h", workers=1)
    res = runner.run({"counter": str(tmp_path / "count"), "succeed_on": 2})
    assert res.ok, res.failed  # try 1 failed, its one retry succeeded
    statuses = [a["status"] for a in runner.ledger.attempts(res.run_id, "wobbly")]
    assert statuses[0] == "worker_lost" and statuses[1:] == ["failed", "succeeded"]
