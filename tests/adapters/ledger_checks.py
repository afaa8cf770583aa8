"""What every adapter test reads back: our ledger, the metrics it feeds, our runner's digests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reliability import EventBus, Ledger, Pipeline, Runner
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
    for status in ("succeeded", "failed", "worker_lost", "contract_violated", "timed_out"):
        value = metrics.registry.get_sample_value(
            "reliability_step_attempts_total",
            {"pipeline": pipeline, "step": step, "status": status})
        if value:
            out[status] = value
    return out


def runner_outputs(pipeline: Pipeline, home: Path, params: dict[str, Any]) -> dict[str, str]:
    """Our own runner's committed digests for the same parameters."""
    runner = Runner(pipeline, home=home, workers=2)
    try:
        res = runner.run(params)
    finally:
        runner.close()
        runner.ledger.close()
    assert res.ok, res.failed
    return dict(res.outputs)
