"""The Dagster adapter against real Dagster: ``execute_in_process`` for retries and
contracts, the multiprocess executor on a temporary persistent instance for kills."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hosts import require_host

require_host("dagster")

import host_pipelines as hp  # noqa: E402
from dagster_runs import events, kill_first_attempt  # noqa: E402
from ledger_checks import (  # noqa: E402
    assert_contract_stop,
    assert_kill_recovered,
    assert_retried_once,
    attempt_rows,
    only_run,
    outputs,
    runner_outputs,
)

from reliability.chaos.faults import ExceptionFault  # noqa: E402
from reliability.chaos.hook import ChaosHook  # noqa: E402
from reliability.contracts import ContractHook, load_contracts  # noqa: E402

pytestmark = [pytest.mark.dagster, pytest.mark.integration, pytest.mark.timeout(600),
              pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]

def _run(home: Path, params: dict[str, Any], **options: Any) -> Any:
    from reliability.adapters.dagster import run_config, to_job

    options.setdefault("contracts", False)
    job = to_job(hp.small, home=home, **options)
    return job.execute_in_process(run_config=run_config(params), raise_on_error=False)


def test_exception_fault_once_is_retried_by_dagster_and_recorded(tmp_path: Path) -> None:
    home = tmp_path / "home"
    chaos = ChaosHook([ExceptionFault(step="transform", error="ConnectionError",
                                      attempts=[1])])
    result = _run(home, {}, hooks=[chaos])
    assert result.success
    assert events(result, "STEP_RESTARTED", "transform") == 1  # Dagster's RetryPolicy
    run_id = assert_retried_once(home, "small", "transform")
    assert run_id == f"small-{result.run_id}"
    assert attempt_rows(home, run_id, "transform")[0]["error_type"] == "ConnectionError"
    refs = {s: result.output_for_node(s)["digest"] for s in hp.small.steps}
    assert refs == runner_outputs(hp.small, tmp_path / "ours", {}) == outputs(home, run_id)


def test_contract_violation_is_not_retried_and_skips_downstream(tmp_path: Path) -> None:
    home = tmp_path / "home"
    contracts = load_contracts(hp.contract_dir(tmp_path), hp.small)
    result = _run(home, {"bad": True}, hooks=[ContractHook(contracts)])
    assert not result.success
    assert events(result, "STEP_FAILURE", "extract") == 1
    assert events(result, "STEP_RESTARTED", "extract") == 0  # max_retries=2, yet no retry
    for step in ("transform", "summary", "fingerprint"):
        assert events(result, "STEP_START", step) == 0
    [failure] = [ev for ev in result.all_events
                 if ev.event_type_value == "STEP_FAILURE" and ev.step_key == "extract"]
    assert "Failure" in failure.event_specific_data.error.cls_name
    run_id = only_run(home)
    assert_contract_stop(home, run_id)
    for step in ("transform", "summary", "fingerprint"):
        assert attempt_rows(home, run_id, step) == []


def test_sigkill_of_an_op_process_is_recorded_and_retried(tmp_path: Path) -> None:
    home = tmp_path / "home"
    params = {"hold": "transform", "signal_dir": str(tmp_path)}
    result, victim = kill_first_attempt(
        tmp_path, "to_job(hp.small, home=home, contracts=False)", home, params, "transform")
    assert result["success"] and result["restarted"] == ["transform"]
    run_id = assert_kill_recovered(home, "transform", victim, tmp_path / "ours", params)
    assert run_id == f"small-{result['run_id']}"


def test_reference_pipeline_outputs_equal_our_runners(tmp_path: Path) -> None:
    from pipelines.reference import pipeline
    from reliability.adapters.dagster import run_config, to_job

    job = to_job(pipeline, home=tmp_path / "home", contracts=False)
    result = job.execute_in_process(run_config=run_config({"seed": 5}))
    refs = {s: result.output_for_node(s)["digest"] for s in pipeline.steps}
    assert refs == runner_outputs(pipeline, tmp_path / "ours", {"seed": 5})


def test_step_names_dagster_cannot_take_are_a_clear_error(tmp_path: Path) -> None:
    from reliability import Pipeline
    from reliability.adapters.dagster import to_job
    from reliability.errors import DefinitionError

    pipe = Pipeline("odd")
    pipe.add(lambda: 1, name="load-rows", inputs={})
    with pytest.raises(DefinitionError, match=r"'load-rows'.*Fix: name steps"):
        to_job(pipe, home=tmp_path)
