"""Every entry point runs through the one run assembly, so every one gets the same hooks.

Entry points: ``reliability run``, ``reliability resume``, ``reliability backfill``, the
scheduler's fires (``schedule serve``: time, HTTP and file triggers all hand their run to
the same executor), ``reliability chaos run`` and ``chaos explore``. For each: a broken
contract fails the run and quarantines the output; the step's metrics are exported (the
run's Prometheus registry counts the violation); the SLA monitor sees the run (a
``max_duration`` breach is recorded); the run's trigger is typed in the ledger. Chaos entry
points also record the fault they injected.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reliability import assembly
from reliability.cli.main import main
from reliability.runner import Ledger
from reliability.runs import Trigger

pytestmark = pytest.mark.integration

PIPELINE = '''
import time
import pandas as pd
from pydantic import BaseModel
from reliability import Pipeline, Retry

class Params(BaseModel):
    rows: int = 10
    sleep: float = 0.0

pipe = Pipeline("mx", params=Params)

@pipe.step(retry=Retry(attempts=2, backoff=0))
def make(params: Params) -> pd.DataFrame:
    time.sleep(params.sleep)
    return pd.DataFrame({"x": list(range(params.rows))})

@pipe.step(retry=Retry(attempts=2, backoff=0))
def total(make: pd.DataFrame) -> dict:
    return {"sum": int(make["x"].sum())}
'''

FILES = {
    "reliability.yaml": """
        pipeline: mx_pipeline:pipe
        home: .rel
        contracts: contracts
        chaos: chaos
        runbooks: runbooks
        sla: contracts/mx.sla.yaml
        """,
    "contracts/mx/make.output.yaml": """
        pipeline: mx
        step: make
        direction: output
        schema:
          columns:
            x: {dtype: int64}
          min_rows: 5
        """,
    "contracts/mx.sla.yaml": """
        version: 1
        pipeline: mx
        steps:
          make: {max_duration: 0.2}
        """,
    "chaos/broken.yaml": """
        title: a broken payload
        seed: 1
        params: {rows: 3, sleep: 0.6}
        steady-state-hypothesis: {run_succeeds: true}
        method:
          - {type: exception, step: total, attempts: [1]}
        """,
    "chaos/fault.yaml": """
        title: total fails once and is retried
        seed: 1
        params: {rows: 10, sleep: 0.6}
        steady-state-hypothesis: {run_succeeds: true}
        method:
          - {type: exception, step: total, attempts: [1]}
        """,
}

BROKEN = {"rows": 3, "sleep": 0.6}  # make sleeps past its SLA, then breaks its contract


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "proj"
    (root / "runbooks").mkdir(parents=True)
    (root / "mx_pipeline.py").write_text(PIPELINE)
    for name, text in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    monkeypatch.chdir(root)
    monkeypatch.delenv("RELIABILITY_HOME", raising=False)
    monkeypatch.syspath_prepend(str(root))
    yield root
    sys.modules.pop("mx_pipeline", None)


@pytest.fixture
def assemblies(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every assembly an entry point builds (the real one, recorded on the way out)."""
    built: list[Any] = []
    real = assembly.assemble

    def recording(*args: Any, **kwargs: Any) -> Any:
        asm = real(*args, **kwargs)
        built.append(asm)
        return asm

    monkeypatch.setattr(assembly, "assemble", recording)
    return built


def _run_cli(argv: list[str]) -> int:
    return main(argv)


def entry_run(project: Path) -> int:
    return _run_cli(["run", "-q", "-p", "rows=3", "-p", "sleep=0.6"])


def entry_resume(project: Path) -> int:
    code = _run_cli(["run", "-q", "-p", "rows=3", "-p", "sleep=0.6"])
    assert code == 1
    with Ledger(project / ".rel" / "ledger.db") as led:
        run_id = led.list_runs()[0].run_id
    return _run_cli(["resume", "-q", run_id])


def entry_backfill(project: Path) -> int:
    return _run_cli(["backfill", "mx_pipeline:pipe", "--start", "2026-01-01",
                     "--end", "2026-01-02", "--every", "1d", "--param", "rows=3",
                     "--param", "sleep=0.6"])


def _fire(source: str) -> Callable[[Path], int]:
    def entry(project: Path) -> int:
        from reliability.pipeline import DataInterval
        from reliability.schedule.executor import RunnerExecutor
        from reliability.schedule.scheduler import RunRequest

        execute = RunnerExecutor(project / ".rel")
        try:
            iv = DataInterval.parse("2026-01-01T00:00:00+00:00/2026-01-02T00:00:00+00:00")
            out = execute(RunRequest("mx-daily", "mx", iv, f"mx-{source}-1", False, source,
                                     BROKEN, "mx_pipeline:pipe"))
        finally:
            execute.close()
        return 0 if out.status == "succeeded" else 1
    return entry


def entry_chaos(project: Path) -> int:
    return _run_cli(["chaos", "run", "chaos/broken.yaml"])


def entry_explore(project: Path) -> int:
    from reliability.chaos.explore import explore
    from reliability.errors import RunError
    from reliability.pipeline import load_pipeline

    try:
        explore(load_pipeline("mx_pipeline:pipe"), home=project / ".rel", params=BROKEN,
                kinds=["exception"], max_examples=1, budget=30)
    except RunError:
        return 1  # the baseline broke its contract: nothing to explore
    return 0


ENTRY_POINTS: dict[str, tuple[Callable[[Path], int], Trigger]] = {
    "run": (entry_run, Trigger.MANUAL),
    "resume": (entry_resume, Trigger.MANUAL),
    "backfill": (entry_backfill, Trigger.BACKFILL),
    "schedule": (_fire("schedule"), Trigger.SCHEDULE),
    "http-trigger": (_fire("http"), Trigger.TRIGGER),
    "file-trigger": (_fire("file"), Trigger.TRIGGER),
    "chaos-run": (entry_chaos, Trigger.CHAOS_BASELINE),
    "chaos-explore": (entry_explore, Trigger.EXPLORE),
}


def _metric(asm: Any, name: str) -> float:
    total = 0.0
    for family in asm.metrics.collect():
        for sample in family.samples:
            if sample.name == name and sample.labels.get("step") == "make":
                total += sample.value
    return total


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_every_entry_point_runs_with_contracts_sla_and_metrics(
        entry: str, project: Path, assemblies: list[Any]) -> None:
    fn, trigger = ENTRY_POINTS[entry]
    code = fn(project)
    assert code != 0, "a broken contract must fail the entry point"
    assert assemblies, "the entry point did not go through the run assembly"
    with Ledger(project / ".rel" / "ledger.db") as led:
        runs = led.list_runs(limit=10)
        assert runs and {r.trigger for r in runs} == {trigger}
        run = runs[0]
        assert run.status == "failed"
        violated = led.events(run.run_id, "contract_violated")
        attempts = led.attempts(run.run_id, "make")
        # never retried: one attempt per execution (a resume executes the run again)
        assert [a["status"] for a in attempts] == ["contract_violated"] * (
            2 if entry == "resume" else 1)
        assert [e["step"] for e in violated] == ["make"] * len(attempts)
        assert [s["status"] for s in led.steps(run.run_id)] == ["failed", "upstream_failed"]
        breaches = led.events(run.run_id, "sla_breached")
        assert any(e["step"] == "make" for e in breaches), "the SLA monitor missed the run"
    quarantined = list((project / ".rel" / "store" / "quarantine").rglob("*"))
    assert any(p.is_file() for p in quarantined), "the bad output was not quarantined"
    assert any(_metric(a, "reliability_contract_violations_total") >= 1 for a in assemblies)


def test_chaos_entry_points_record_the_fault_they_inject(project: Path,
                                                         assemblies: list[Any]) -> None:
    assert _run_cli(["chaos", "run", "chaos/fault.yaml"]) == 0
    with Ledger(project / ".rel" / "ledger.db") as led:
        runs = {r.trigger: r for r in led.list_runs(limit=10)}
        assert set(runs) == {Trigger.CHAOS, Trigger.CHAOS_BASELINE}
        chaos = runs[Trigger.CHAOS]
        (fault,) = led.events(chaos.run_id, "fault_injected")
        assert fault["step"] == "total" and fault["details"]["type"] == "exception"
        assert [a["status"] for a in led.attempts(chaos.run_id, "total")] == [
            "failed", "succeeded"]
        assert not chaos.production
    assert any(_metric(a, "reliability_faults_injected_total") >= 0 for a in assemblies)
    faults = sum(s.value for a in assemblies for f in a.metrics.collect() for s in f.samples
                 if s.name == "reliability_faults_injected_total")
    assert faults == 1
