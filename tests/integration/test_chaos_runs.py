"""Chaos against real processes and sockets: worker kills, rollbacks, replay, exploration."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from reliability import Pipeline, Retry, Runner, StepContext
from reliability.chaos.controller import inject
from reliability.chaos.experiment import load_experiment
from reliability.chaos.explore import explore
from reliability.chaos.faults import KillWorker
from reliability.chaos.leases import ProxyApi
from reliability.chaos.runner import run_experiment
from reliability.chaos.target import TargetProcess

pytestmark = pytest.mark.integration
R = Retry(attempts=3, backoff=0)
ROOT = Path(__file__).resolve().parents[2]

pipe = Pipeline("chaos_t")


@pipe.step(retry=R, timeout=20)
def source() -> list[int]:
    return list(range(10))


@pipe.step(retry=R, timeout=20)
def slow(source: list[int]) -> list[int]:
    time.sleep(0.4)
    return [x * x for x in source]


@pipe.step(retry=R, timeout=20)
def total(slow: list[int]) -> int:
    return sum(slow)


bug = Pipeline("planted_bug")


@bug.step(retry=R, timeout=20)
def base() -> list[int]:
    return [1, 2, 3]


@bug.step(retry=R, timeout=20)
def append_log(ctx: StepContext, base: list[int]) -> list[int]:
    """Not idempotent: appends to an external file each attempt, output depends on it."""
    log = Path(os.environ["CHAOS_BUG_DIR"]) / f"{ctx.run_id}.log"
    with log.open("a") as fh:
        fh.write("attempt\n")
    time.sleep(0.15)
    return [*base, len(log.read_text().splitlines())]


@bug.step(retry=R, timeout=20)
def report(append_log: list[int]) -> int:
    return sum(append_log)


def test_worker_kill_mid_step_is_recovered_with_baseline_outputs(tmp_path: Path) -> None:
    runner = Runner(pipe, home=tmp_path, workers=2)
    baseline = runner.run(resume=False)
    with inject(runner, KillWorker(name="kill", step="slow", after=0.15), seed=1) as ctl:
        result = runner.run(resume=False)
    assert result.ok and result.outputs == baseline.outputs
    attempts = runner.ledger.attempts(result.run_id, "slow")
    assert [a["status"] for a in attempts] == ["worker_lost", "succeeded"]
    assert attempts[0]["worker_pid"] != attempts[1]["worker_pid"]
    commits = runner.ledger.commits(result.run_id)
    assert sorted(c["step"] for c in commits) == ["slow", "source", "total"]
    injected = runner.ledger.events(result.run_id, "fault_injected")
    assert [(e["step"], e["details"]["signal"]) for e in injected] == [("slow", "SIGKILL")]
    assert any(e["kind"] == "worker_lost" for e in ctl.timeline)
    runner.close()


def test_a_worker_kill_lands_on_a_step_that_ends_before_its_time(tmp_path: Path) -> None:
    """``total`` takes a millisecond, far less than the kill's 0.6 s (as when the baseline
    was slower than the chaos run's warm worker): the attempt is held open until the kill
    lands, so the fault fires, the attempt is lost and retried, nothing is committed twice."""
    runner = Runner(pipe, home=tmp_path, workers=2)
    baseline = runner.run(resume=False)
    with inject(runner, KillWorker(name="kill", step="total", after=0.6), seed=1):
        result = runner.run(resume=False)
    assert result.ok and result.outputs == baseline.outputs
    attempts = runner.ledger.attempts(result.run_id, "total")
    assert [a["status"] for a in attempts] == ["worker_lost", "succeeded"]
    lost = attempts[0]
    assert lost["ended_at"] - lost["started_at"] >= 0.6  # held until the kill, not longer
    assert lost["ended_at"] - lost["started_at"] < 0.6 + 4.5
    commits = runner.ledger.commits(result.run_id)
    assert sorted(c["step"] for c in commits) == ["slow", "source", "total"]
    injected = runner.ledger.events(result.run_id, "fault_injected")
    assert [(e["step"], e["details"]["signal"]) for e in injected] == [("total", "SIGKILL")]
    runner.close()


def _spec(api: str, port: int, **over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "title": "rollback check", "seed": 5,
        "target": {"proxy_api": api, "services": [{"name": "svc",
                                                   "upstream": f"127.0.0.1:{port}"}]},
        "steady-state-hypothesis": {"run_succeeds": True, "outputs_equal_baseline": True},
        "method": [
            {"type": "network", "name": "lag", "proxy": "svc", "toxic": "latency",
             "attributes": {"latency": 10}},
            {"type": "exception", "name": "always", "step": "total", "attempts": "all",
             "error": "RuntimeError"},
        ],
    }
    spec.update(over)
    return spec


def test_rollbacks_run_after_a_failed_method(tmp_path: Path) -> None:
    with TargetProcess({"svc": "pipelines.wine_service:WineService"}) as target:
        assert target.api_url is not None
        journal = run_experiment(_spec(target.api_url, target.ports["svc"]), pipeline=pipe,
                                 home=tmp_path, report_path=tmp_path / "r.html")
        assert journal.status == "deviated"
        assert journal.data["run"]["failed"] == {"total": "RuntimeError: chaos: injected "
                                                 "fault (fault 'always')"}
        actions = {(r["action"], r["toxic"] or r["proxy"]) for r in journal.data["rollbacks"]}
        assert ("undo toxic", f"chaos-{journal.data['experiment_id']}-lag") in actions
        assert all(r["ok"] for r in journal.data["rollbacks"])
        assert ProxyApi(target.api_url).proxies() == {}  # toxics and the proxy are gone
    assert (tmp_path / "r.html").read_text().count("<rect") >= 4


def test_same_seed_gives_the_same_journal(tmp_path: Path) -> None:
    spec = {"title": "replay", "seed": 13,
            "steady-state-hypothesis": {"run_succeeds": True},
            "method": [{"type": "exception", "step": s, "probability": 0.5,
                        "attempts": [1, 2], "error": "ConnectionError"}
                       for s in ("source", "slow", "total")]
            + [{"type": "latency", "step": "source", "seconds": 0.01, "jitter": 0.005}]}
    first = run_experiment(spec, pipeline=pipe, home=tmp_path / "a")
    second = run_experiment(spec, pipeline=pipe, home=tmp_path / "b")
    assert first.normalized() == second.normalized()
    assert first.data["run"]["run_id"] != second.data["run"]["run_id"]
    other = run_experiment(spec, pipeline=pipe, home=tmp_path / "c", seed=14)
    assert other.normalized()["faults"] != first.normalized()["faults"]


def test_explore_finds_and_shrinks_a_planted_bug(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAOS_BUG_DIR", str(tmp_path))
    seen: list[tuple[int, str | None]] = []
    result = explore(bug, home=tmp_path / "home", max_examples=30, budget=45, seed=3,
                     pipeline_ref="tests.integration.test_chaos_runs:bug",
                     progress=lambda runs, problem: seen.append((runs, problem)))
    assert result.found, result
    assert [n for n, _ in seen] == list(range(1, result.examples + 1))  # every schedule
    assert any(problem for _, problem in seen)  # the break was reported as it happened
    assert "append_log" in (result.violation or "")
    assert len(result.schedule) == 1
    (fault,) = result.schedule
    assert fault.step == "append_log"
    assert fault.type in ("kill_worker", "exception")  # type: ignore[attr-defined]
    replay = tmp_path / "found.yaml"
    replay.write_text(result.experiment_yaml or "")
    spec, _ = load_experiment(replay)
    assert [f.step for f in spec.method] == ["append_log"]


def test_explore_passes_an_idempotent_pipeline(tmp_path: Path) -> None:
    result = explore(pipe, home=tmp_path, max_examples=4, budget=20, seed=1,
                     kinds=["exception"])
    assert not result.found and result.examples >= 1


PROJECT_PIPELINE = '''
import time
from reliability import Pipeline, Retry

pipeline = Pipeline("victim")

@pipeline.step(retry=Retry(attempts=2, backoff=0), timeout=60)
def wait(ctx):
    if not ctx.run_id.endswith("-baseline"):  # the method's run outlives the controller
        time.sleep(30)
    return 1
'''


def test_cleanup_after_the_controller_is_sigkilled(tmp_path: Path) -> None:
    (tmp_path / "victim.py").write_text(PROJECT_PIPELINE)
    (tmp_path / "reliability.yaml").write_text("pipeline: victim:pipeline\nhome: state\n")
    with TargetProcess({"svc": "pipelines.wine_service:WineService"}) as target:
        assert target.api_url is not None
        api = ProxyApi(target.api_url)
        exp = tmp_path / "exp.yaml"
        exp.write_text(textwrap.dedent(f"""
            title: killed controller
            target:
              proxy_api: {target.api_url}
              services: [{{name: svc, upstream: "127.0.0.1:{target.ports['svc']}"}}]
            method:
              - {{type: network, name: slow, proxy: svc, toxic: latency,
                  attributes: {{latency: 100}}}}
              - {{type: network, name: cut, proxy: svc, step: wait, toxic: limit_data,
                  attributes: {{bytes: 10}}}}
            """))
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}
        proc = subprocess.Popen([sys.executable, "-m", "reliability", "chaos", "run",
                                 str(exp)], cwd=tmp_path, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if "svc" in api.proxies() and len(api.toxics("svc")) == 2:
                    break
                time.sleep(0.05)
            assert len(api.toxics("svc")) == 2, proc.stderr
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            if proc.stderr is not None:
                proc.stderr.close()
        assert len(api.toxics("svc")) == 2  # a dead controller rolls nothing back itself
        out = subprocess.run([sys.executable, "-m", "reliability", "chaos", "cleanup"],
                             cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=60, check=False)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "undone" in out.stdout
        assert "svc" not in api.proxies()  # toxics removed and the proxy deleted


def test_reference_pipeline_survives_a_worker_kill(tmp_path: Path) -> None:
    journal = run_experiment(ROOT / "chaos" / "kill-train.yaml", home=tmp_path)
    assert journal.status == "passed", journal.data["steady_state"]
    assert [f["step"] for f in journal.faults] == ["train"]
    lost = [a for a in journal.data["attempts"] if a["status"] == "worker_lost"]
    assert [a["step"] for a in lost] == ["train"]


def test_reference_ingest_gets_real_network_faults(tmp_path: Path) -> None:
    journal = run_experiment(ROOT / "chaos" / "flaky-network.yaml", home=tmp_path)
    assert journal.status == "passed", journal.data["steady_state"]
    ingest = [a for a in journal.data["attempts"] if a["step"] == "ingest"]
    assert ingest[0]["status"] == "failed"
    assert ingest[0]["error_type"] == "ConnectionResetError"
    assert ingest[-1]["status"] == "succeeded"
    assert {f["toxic"] for f in journal.faults} == {"latency", "reset_peer"}


patient = Pipeline("patient")


@patient.step(retry=Retry(attempts=50, backoff=0.05, jitter=0), timeout=20)
def stubborn() -> int:
    return 1


@patient.step
def after_stubborn(stubborn: int) -> int:
    return stubborn + 1


def test_abort_condition_cancels_the_run_from_the_sweeper_thread(tmp_path: Path) -> None:
    spec = {"title": "burning budget", "seed": 5,
            "steady-state-hypothesis": {"run_succeeds": True},
            "method": [{"type": "exception", "step": "stubborn", "attempts": "all",
                        "error": "ConnectionError"}],
            "abort": {"max_failed_attempts": 3}}
    t0 = time.monotonic()
    journal = run_experiment(spec, pipeline=patient, home=tmp_path)
    assert time.monotonic() - t0 < 20  # 50 attempts x 50 ms were never all tried
    assert journal.status == "aborted" and "failed attempts" in str(journal.data["aborted"])
    assert journal.data["run"]["status"] == "cancelled"
    tried = [a for a in journal.data["attempts"] if a["step"] == "stubborn"]
    assert 3 <= len(tried) < 50


def test_a_worker_kill_is_published_before_the_lost_worker(tmp_path: Path) -> None:
    from reliability import EventKind

    runner = Runner(pipe, home=tmp_path, workers=2)
    order: list[str] = []
    runner.bus.subscribe(lambda e: order.append(e.kind.value),
                         kinds={EventKind.FAULT_INJECTED, EventKind.WORKER_LOST})
    with inject(runner, KillWorker(name="kill", step="slow", after=0.1), seed=1):
        assert runner.run(resume=False).ok
    assert order == ["fault_injected", "worker_lost"]
