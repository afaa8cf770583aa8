"""The Prefect 3 adapter against real Prefect: flows on Prefect's test harness (a real
ephemeral API server with its own SQLite database, PREFECT_HOME in a temporary directory)."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hosts import require_host

require_host("prefect")

import host_pipelines as hp  # noqa: E402
from helpers import wait_for  # noqa: E402
from ledger_checks import (  # noqa: E402
    assert_contract_stop,
    assert_retried_once,
    attempt_rows,
    attempts_metric,
    only_run,
    outputs,
    run_status,
    runner_outputs,
)

from reliability.chaos.faults import ExceptionFault  # noqa: E402
from reliability.chaos.hook import ChaosHook  # noqa: E402
from reliability.contracts import ContractHook, load_contracts  # noqa: E402

pytestmark = [pytest.mark.prefect, pytest.mark.integration, pytest.mark.timeout(600),
              pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Prefect's test harness: a real ephemeral API server, once per module."""
    settings = {
        "PREFECT_HOME": str(tmp_path_factory.mktemp("prefect_home")),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    try:
        from prefect.testing.utilities import prefect_test_harness

        with prefect_test_harness(server_startup_timeout=300):
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _flow(home: Path, **options: Any) -> Any:
    from reliability.adapters.prefect import to_flow

    options.setdefault("contracts", False)
    return to_flow(hp.small, home=home, **options)


def test_exception_fault_once_is_retried_by_prefect_and_recorded(
        tmp_path: Path, harness: None) -> None:
    home = tmp_path / "home"
    chaos = ChaosHook([ExceptionFault(step="transform", error="ConnectionError",
                                      attempts=[1])])
    refs = _flow(home, hooks=[chaos])(params={})
    run_id = assert_retried_once(home, "small", "transform")
    assert attempt_rows(home, run_id, "transform")[0]["error_type"] == "ConnectionError"
    ours = runner_outputs(hp.small, tmp_path / "ours", {})
    assert refs == ours == outputs(home, run_id)


def test_contract_violation_is_not_retried_and_skips_downstream(
        tmp_path: Path, harness: None) -> None:
    home = tmp_path / "home"
    contracts = load_contracts(hp.contract_dir(tmp_path), hp.small)
    state = _flow(home, hooks=[ContractHook(contracts)])(params={"bad": True},
                                                         return_state=True)
    assert state.is_failed()
    run_id = only_run(home)
    assert_contract_stop(home, run_id)  # retries=2, yet one attempt
    for step in ("transform", "summary", "fingerprint"):
        assert attempt_rows(home, run_id, step) == []  # never started


def test_sigkill_of_an_isolated_step_is_recorded_and_retried(
        tmp_path: Path, harness: None) -> None:
    home = tmp_path / "home"
    signals = tmp_path / "signals"
    signals.mkdir()
    params = {"hold": "transform", "signal_dir": str(signals)}
    flow = _flow(home, isolate=True)
    done: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: done.update(
        state=flow(params=params, return_state=True)))
    thread.start()
    try:
        marker = signals / "transform.running"
        wait_for(lambda: marker.exists() or not thread.is_alive(), timeout=120,
                 what="transform's first attempt")
        victim = int(marker.read_text())
        assert victim != os.getpid()  # our supervised worker, not the flow's process
        os.kill(victim, signal.SIGKILL)
    finally:
        thread.join(timeout=300)
    assert done["state"].is_completed()
    run_id = only_run(home)
    rows = attempt_rows(home, run_id, "transform")
    assert [(a["attempt"], a["status"]) for a in rows] == [(1, "worker_lost"),
                                                           (2, "succeeded")]
    assert rows[0]["worker_pid"] == victim
    assert run_status(home, run_id) == "succeeded"
    assert attempts_metric(home, run_id, "small", "transform") == {"worker_lost": 1.0,
                                                                  "succeeded": 1.0}
    assert outputs(home, run_id) == runner_outputs(hp.small, tmp_path / "ours", params)


def test_reliable_adds_our_hooks_to_an_existing_task(tmp_path: Path, harness: None) -> None:
    from prefect import flow, task

    from reliability.adapters.prefect import reliable

    home = tmp_path / "home"
    chaos = ChaosHook([ExceptionFault(step="clean", attempts=[1])])

    @reliable(home=home, hooks=[chaos])
    @task(retries=2)
    def clean(rows: list[float]) -> dict[str, float]:  # a team's own task, unchanged
        return {"n": len(rows), "total": sum(rows)}

    @flow(name="guarded")
    def guarded() -> dict[str, float]:
        return clean([1.0, 2.0, 3.0])

    assert guarded() == {"n": 3, "total": 6.0}
    assert_retried_once(home, "guarded", "clean")


def test_reference_pipeline_outputs_equal_our_runners(tmp_path: Path, harness: None) -> None:
    from pipelines.reference import pipeline
    from reliability.adapters.prefect import to_flow

    refs = to_flow(pipeline, home=tmp_path / "home", contracts=False)(params={"seed": 5})
    assert refs == runner_outputs(pipeline, tmp_path / "ours", {"seed": 5})
    assert set(refs) == set(pipeline.steps)
