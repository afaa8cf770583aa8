"""What every adapter test reads back: our ledger, the metrics it feeds, our runner's digests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reliability import DataInterval, EventBus, Ledger, Pipeline, Runner
from reliability.runbooks.evidence import LedgerView
from reliability.sla.metrics import PipelineMetrics
from reliability.sla.replay import read_events


def attempt_rows(home: Path, run_id: str, step: str) -> list[dict[str, Any]]:
    with Ledger(home / "ledger.db") as led:
        return sorted(led.attempts(run_id, step), key=lambda a: a["attempt"])


def step_states(home: Path, run_id: str) -> dict[str, str]:
    with Ledger(home / "ledger.db") as led:
        return {s["step"]: s["status"] for s in led.steps(run_id)}


def outputs(home: Path, run_id: str) -> dict[str, str]:
    with Ledger(home / "ledger.db") as led:
        return {s["step"]: s["output_hash"] for s in led.steps(run_id) if s["output_hash"]}


def run_status(home: Path, run_id: str) -> str:
    with Ledger(home / "ledger.db") as led:
        return led.get_run(run_id).status


def only_run(home: Path) -> str:
    with Ledger(home / "ledger.db") as led:
        [run] = led.list_runs()
        return run.run_id


def attempts_metric(home: Path, run_id: str, pipeline: str, step: str) -> dict[str, float]:
    """``reliability_step_attempts_total`` by status for ``step``, as ``reliability sla
    serve`` computes it: the ledger's events replayed onto a fresh metrics registry."""
    bus = EventBus()
    metrics = PipelineMetrics()
    metrics.attach(bus)
    for ev in read_events(LedgerView(home / "ledger.db"), run_id=run_id):
        bus.publish(ev)
    out: dict[str, float] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            labels = sample.labels
            if (sample.name == "reliability_step_attempts_total" and sample.value
                    and labels.get("pipeline") == pipeline and labels.get("step") == step):
                out[labels["status"]] = out.get(labels["status"], 0.0) + sample.value
    return out


def runner_outputs(pipeline: Pipeline, home: Path, params: dict[str, Any], *,
                   interval: DataInterval | None = None) -> dict[str, str]:
    """Our own runner's committed digests for the same parameters and data interval (a step
    told to hold for a kill is released first: our run must not wait for one)."""
    if params.get("signal_dir"):
        (Path(params["signal_dir"]) / "release").write_text("")
    runner = Runner(pipeline, home=home, workers=2)
    try:
        res = runner.run(params, interval=interval)
    finally:
        runner.close()
        runner.ledger.close()
    assert res.ok, res.failed
    return dict(res.outputs)


def assert_contract_stop(home: Path, run_id: str) -> None:
    """``small`` after extract broke its contract: one attempt, the rest upstream_failed,
    the run failed, the bad output quarantined, the runbook written."""
    import pandas as pd

    assert [a["status"] for a in attempt_rows(home, run_id, "extract")] == [
        "contract_violated"]
    assert step_states(home, run_id) == {"extract": "failed", "transform": "upstream_failed",
                                         "summary": "upstream_failed",
                                         "fingerprint": "upstream_failed"}
    assert run_status(home, run_id) == "failed"
    bad = pd.read_pickle(home / "store" / "quarantine" / run_id / "extract.1.out")
    assert bad["x"].max() == 7.5
    runbook = home / "runbooks" / run_id / "contract_violation-extract.md"
    assert runbook.is_file() and "extract" in runbook.read_text()


def assert_retried_once(home: Path, pipeline: str, step: str) -> str:
    """The only run of ``home``: ``step`` failed once, then succeeded; returns its id."""
    run_id = only_run(home)
    assert run_id.startswith(f"{pipeline}-")
    rows = attempt_rows(home, run_id, step)
    assert [(a["attempt"], a["status"]) for a in rows] == [(1, "failed"), (2, "succeeded")]
    assert all(a["worker_pid"] for a in rows)
    assert attempts_metric(home, run_id, pipeline, step) == {"failed": 1.0,
                                                            "succeeded": 1.0}
    assert run_status(home, run_id) == "succeeded"
    return run_id


def assert_kill_recovered(home: Path, step: str, victim: int, ours: Path,
                          params: dict[str, Any]) -> str:
    """The only run of ``home`` (pipeline ``small``): ``step``'s first attempt was the
    killed process ``victim``, recorded lost; the host's retry succeeded, to our runner's
    digests. Returns the run id."""
    from host_pipelines import small

    run_id = only_run(home)
    rows = attempt_rows(home, run_id, step)
    assert [(a["attempt"], a["status"]) for a in rows] == [(1, "worker_lost"),
                                                           (2, "succeeded")]
    assert rows[0]["worker_pid"] == victim
    assert run_status(home, run_id) == "succeeded"
    assert attempts_metric(home, run_id, "small", step) == {"worker_lost": 1.0,
                                                           "succeeded": 1.0}
    assert outputs(home, run_id) == runner_outputs(small, ours, params)
    return run_id
