"""The Dask executor on a real LocalCluster: worker death recorded and recovered by our loop
(never rerun by Dask, never an opaque KilledWorker), the reference pipeline byte-identical to
the local executor, a chaos experiment that SIGKILLs a Dask worker, an S3 store every worker
reaches, and the command line on an existing scheduler."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers_s3 import moto_s3, new_bucket
from pydantic import BaseModel

from reliability import Pipeline, Retry, StepContext
from reliability.assembly import RunOptions
from reliability.cli.main import main
from reliability.runner import Runner
from reliability.runner.store import ObjectStore

pytest.importorskip("distributed")
pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

class LogParams(BaseModel):
    log: str


deaths = Pipeline("dask-deaths", params=LogParams)


def _note(ctx: StepContext, log: str) -> None:
    with open(log, "a") as fh:  # one line per execution of an attempt
        fh.write(f"{ctx.step} {ctx.attempt} {os.getpid()}\n")


@deaths.step(retry=Retry(attempts=3, backoff=0))
def victim(ctx: StepContext, params: LogParams) -> str:
    _note(ctx, params.log)
    if ctx.attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)  # the Dask worker running it dies mid-step
    return "survived"


@deaths.step(retry=Retry(attempts=3, backoff=0))
def after(victim: str) -> str:
    return victim.upper()


killer = Pipeline("dask-killer", params=LogParams)


@killer.step(retry=Retry(attempts=3, backoff=0))
def poison(ctx: StepContext, params: LogParams) -> None:
    _note(ctx, params.log)
    os.kill(os.getpid(), signal.SIGKILL)  # kills every worker that runs it


def _lines(log: Path) -> list[tuple[str, int, int]]:
    return [(s, int(a), int(p)) for s, a, p in
            (line.split() for line in log.read_text().splitlines())]


def test_a_killed_worker_is_worker_lost_and_dask_does_not_rerun_it(tmp_path: Path) -> None:
    log = tmp_path / "executions.log"
    runner = Runner(deaths, home=tmp_path / "home", executor="dask", workers=2)
    res = runner.run({"log": str(log)})
    assert res.ok, res.failed
    assert runner.store.load(res.outputs["after"], "json") == "SURVIVED"
    attempts = runner.ledger.attempts(res.run_id, "victim")
    assert [a["status"] for a in attempts] == ["worker_lost", "succeeded"]
    first = attempts[0]
    assert first["error_type"] == "WorkerLost"
    assert "Dask worker tcp://127.0.0.1:" in first["error"]
    assert "while running step 'victim' attempt 1 (handle-worker-cleanup)" in first["error"]
    runs = _lines(log)
    # attempt 1 ran once (Dask did not rerun it elsewhere), in the worker the ledger names
    assert [a for s, a, _ in runs] == [1, 2]
    assert first["worker_pid"] == runs[0][2]
    lost = runner.ledger.events(res.run_id, "worker_lost")
    assert [(e["step"], e["attempt"]) for e in lost] == [("victim", 1)]


def test_a_step_that_keeps_killing_workers_fails_naming_step_and_kills(
        tmp_path: Path) -> None:
    log = tmp_path / "executions.log"
    runner = Runner(killer, home=tmp_path / "home", executor="dask", workers=2)
    res = runner.run({"log": str(log)})
    assert res.status == "failed"
    error = res.failed["poison"]
    assert "Dask worker" in error and "step 'poison' attempt 3" in error
    assert "workers lost running 'poison' in this run: 3" in error
    attempts = runner.ledger.attempts(res.run_id, "poison")
    assert [a["status"] for a in attempts] == ["worker_lost"] * 3
    assert not any("KilledWorker" in (a["error"] or "") for a in attempts)
    assert [a for _, a, _ in _lines(log)] == [1, 2, 3]  # each attempt ran exactly once
    assert "poison" in runner.ledger.get_run(res.run_id).error


def test_reference_pipeline_on_a_local_cluster_is_byte_identical(tmp_path: Path) -> None:
    from pipelines.reference import pipeline as reference

    local = Runner(reference, home=tmp_path / "local", workers=2).run()
    dask = Runner(reference, home=tmp_path / "dask", executor="dask", workers=2)
    res = dask.run()
    assert local.ok and res.ok, (local.failed, res.failed)
    assert res.outputs == local.outputs
    for step, digest in res.outputs.items():
        assert dask.store.verify(digest), step
    pids = {a["worker_pid"] for a in dask.ledger.attempts(res.run_id)}
    assert os.getpid() not in pids and None not in pids  # ran in the Dask workers


slow = Pipeline("dask-slow")


@slow.step(retry=Retry(attempts=3, backoff=0))
def prepare() -> list[int]:
    return list(range(1000))


@slow.step(retry=Retry(attempts=3, backoff=0), timeout=60)
def crunch(prepare: list[int]) -> int:
    time.sleep(2.0)  # long enough to be killed half way
    return sum(x * x for x in prepare)


@slow.step(retry=Retry(attempts=3, backoff=0))
def finish(crunch: int) -> str:
    return f"total={crunch}"


def test_chaos_kill_worker_sigkills_a_dask_worker_mid_step_and_the_experiment_passes(
        tmp_path: Path) -> None:
    from reliability.chaos.runner import run_experiment

    spec = {
        "title": "a Dask worker killed mid-step loses and duplicates nothing", "seed": 3,
        "steady-state-hypothesis": {"run_succeeds": True, "outputs_equal_baseline": True,
                                    "single_commit_per_step": True},
        "method": [{"name": "kill-cruncher", "type": "kill_worker", "step": "crunch",
                    "after": 0.5}],
        "blast_radius": {"steps": ["crunch"]},
    }
    journal = run_experiment(spec, pipeline=slow, home=tmp_path / "home",
                             options=RunOptions(executor="dask", sla=False))
    assert journal.ok, (journal.status, journal.data["steady_state"], journal.data["error"])
    (fault,) = journal.faults
    assert fault["type"] == "kill_worker" and fault["step"] == "crunch"
    runner = Runner(slow, home=tmp_path / "home")
    crunch_attempts = runner.ledger.attempts(journal.data["run"]["run_id"], "crunch")
    assert [a["status"] for a in crunch_attempts] == ["worker_lost", "succeeded"]
    first = crunch_attempts[0]
    assert first["worker_pid"] == fault["worker_pid"]  # the pid killed ran the attempt
    assert "Dask worker tcp://127.0.0.1:" in first["error"]  # ... and was a Dask worker


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, Any]]:
    with moto_s3() as options:
        yield options


def test_an_s3_store_is_reached_by_every_dask_worker(tmp_path: Path,
                                                     s3: dict[str, Any]) -> None:
    from tests.conformance.conformance_pipeline import pipeline as conformance

    local = Runner(conformance, home=tmp_path / "local", workers=2).run()
    store = ObjectStore(new_bucket(s3), s3)
    runner = Runner(conformance, home=tmp_path / "home", executor="dask", workers=2,
                    store=store)
    res = runner.run({"fail_step": "report", "fail_times": 1})
    assert res.ok, res.failed
    assert res.outputs == local.outputs  # the same bytes, in the bucket
    assert sorted(store.digests()) == sorted(set(local.outputs.values()))
    assert not (tmp_path / "home" / "store" / "objects").exists() or not any(
        (tmp_path / "home" / "store" / "objects").iterdir())
    assert main(["verify", "--home", str(tmp_path / "home"), "--store", store.url]) == 0


def test_cli_runs_on_an_existing_scheduler_from_the_project_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster:
        (tmp_path / "reliability.yaml").write_text(
            "pipeline: tests.integration.test_dask_executor:deaths\n"
            f"executor: dask\ndask:\n  scheduler: {cluster.scheduler_address}\n")
        monkeypatch.chdir(tmp_path)
        monkeypatch.syspath_prepend(str(ROOT))
        log = tmp_path / "executions.log"
        assert main(["run", "-q", "--home", str(tmp_path / "home"),
                     "--param", f"log={log}"]) == 0
        seen = cluster.scheduler.task_prefixes  # the attempts ran on that cluster
        assert any(p.startswith("reliability-attempt") for p in seen)
    # a scheduler that is not there is a clear error naming the key and the fix
    start = time.monotonic()
    assert main(["run", "-q", "--home", str(tmp_path / "home2"), "--executor", "dask",
                 "--scheduler", "tcp://127.0.0.1:9", "--param", f"log={log}"]) == 2
    assert time.monotonic() - start < 60


daily = Pipeline("dask-daily")


@daily.step
def where(ctx: StepContext) -> dict[str, object]:
    """Which interval, and whether this ran inside a Dask worker."""
    from distributed import get_worker

    try:
        get_worker()
        on_dask = True
    except ValueError:
        on_dask = False
    assert ctx.interval is not None
    return {"day": ctx.interval.start.date().isoformat(), "dask": on_dask}


def test_a_parallel_backfill_runs_on_dask_from_the_project_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "reliability.yaml").write_text(
        "pipeline: tests.integration.test_dask_executor:daily\nexecutor: dask\nworkers: 2\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT))
    home = tmp_path / "home"
    assert main(["backfill", "tests.integration.test_dask_executor:daily", "--start",
                 "2026-01-01", "--end", "2026-01-04", "--every", "1d", "-j", "2",
                 "--home", str(home)]) == 0
    runner = Runner(daily, home=home)
    runs = runner.ledger.list_runs()
    assert len(runs) == 3 and {r.status for r in runs} == {"succeeded"}
    seen = sorted(runner.store.load(runner.ledger.steps(r.run_id)[0]["output_hash"], "json")
                  ["day"] for r in runs)
    assert seen == ["2026-01-01", "2026-01-02", "2026-01-03"]
    for r in runs:
        out = runner.store.load(runner.ledger.steps(r.run_id)[0]["output_hash"], "json")
        assert out["dask"] is True


def test_a_pipeline_the_workers_cannot_import_fails_once_with_the_fix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    code = tmp_path / "code"
    code.mkdir()
    (code / "vanishing_pipeline.py").write_text(
        "from reliability import Pipeline\n"
        "pipeline = Pipeline('vanishing')\n\n"
        "@pipeline.step\n"
        "def only() -> int:\n"
        "    return 1\n")
    monkeypatch.syspath_prepend(str(code))
    module = importlib.import_module("vanishing_pipeline")
    (code / "vanishing_pipeline.py").unlink()  # imported here, not importable on workers
    runner = Runner(module.pipeline, home=tmp_path / "home", executor="dask", workers=2)
    res = runner.run()
    assert res.status == "failed"
    (attempt,) = runner.ledger.attempts(res.run_id, "only")  # not retried: no retry helps
    assert attempt["error_type"] == "DefinitionError"
    assert "could not be loaded on Dask worker" in attempt["error"]
    assert "vanishing_pipeline" in attempt["error"] and "Fix: install" in attempt["error"]
