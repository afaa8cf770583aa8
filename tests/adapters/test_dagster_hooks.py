"""A team's own Dagster ops with our hooks, against real Dagster: ``@reliable`` records every
try from inside the op (also those Dagster retries, on which failure hooks do not fire);
``ledger_hooks()`` records the outcome of ops that are not wrapped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hosts import require_host

require_host("dagster")

from dagster_runs import events  # noqa: E402
from ledger_checks import (  # noqa: E402
    assert_retried_once,
    attempt_rows,
    only_run,
    outputs,
    run_status,
    runner_outputs,
    step_states,
)

from reliability.chaos.faults import ExceptionFault  # noqa: E402
from reliability.chaos.hook import ChaosHook  # noqa: E402

pytestmark = [pytest.mark.dagster, pytest.mark.integration, pytest.mark.timeout(600),
              pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]

CONTRACT = """\
pipeline: guarded
step: clean
direction: output
schema:
  strict: false
  columns:
    x: {dtype: float64, in_range: {min_value: 0, max_value: 1}}
"""


def _team_job(home: Path, fired: list[str], chaos: Any = (), *, bad: bool = False,
              sla: bool = False) -> Any:
    """A team's job: ``rows`` (its own op, not wrapped) -> ``clean`` (its own op under
    ``@reliable``) -> ``report``, with a failure hook of the team's that notes each firing
    and our ledger hooks. (Dagster resolves annotations: none name names local here.)"""
    import dagster as dg
    import pandas as pd

    from reliability.adapters.dagster import ledger_hooks, reliable

    @dg.op
    def rows() -> list[float]:
        return [0.1, 0.2, 7.5 if bad else 0.3]

    @reliable(home=home, hooks=list(chaos), sla=sla)
    @dg.op(retry_policy=dg.RetryPolicy(max_retries=2))
    def clean(context, rows: list[float]):  # type: ignore[no-untyped-def]
        context.log.info("cleaning")  # a team's op, unchanged: context and all
        return pd.DataFrame({"x": rows})

    @dg.op
    def report(clean) -> int:  # type: ignore[no-untyped-def]
        return len(clean)

    @dg.failure_hook
    def team_alert(context) -> None:  # type: ignore[no-untyped-def]
        fired.append(context.step_key)

    @dg.job(name="guarded", hooks={team_alert, *ledger_hooks(home=home, sla=sla)})
    def guarded() -> None:
        report(clean(rows()))

    return guarded


def test_reliable_op_records_the_try_dagster_retried_without_a_failure_hook(
        tmp_path: Path) -> None:
    home = tmp_path / "home"
    fired: list[str] = []
    chaos = ChaosHook([ExceptionFault(step="clean", error="ConnectionError", attempts=[1])])
    result = _team_job(home, fired, [chaos]).execute_in_process(raise_on_error=False)
    assert result.success
    assert events(result, "STEP_UP_FOR_RETRY", "clean") == 1  # the op's own RetryPolicy
    assert fired == []  # Dagster ran no failure hook for the failed try ...
    run_id = assert_retried_once(home, "guarded", "clean")  # ... the ledger has it
    assert run_id == f"guarded-{result.run_id}"
    assert attempt_rows(home, run_id, "clean")[0]["error_type"] == "ConnectionError"
    assert step_states(home, run_id) == {"rows": "succeeded", "clean": "succeeded",
                                         "report": "succeeded"}
    assert result.output_for_node("report") == 3
    assert result.output_for_node("clean")["x"].tolist() == [0.1, 0.2, 0.3]


def test_reliable_op_contract_violation_is_not_retried_and_stops_downstream(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pandas as pd

    contracts = tmp_path / "contracts" / "guarded"
    contracts.mkdir(parents=True)
    (contracts / "clean.output.yaml").write_text(CONTRACT)
    monkeypatch.chdir(tmp_path)  # the project's contracts
    home = tmp_path / "home"
    fired: list[str] = []
    result = _team_job(home, fired, bad=True, sla=True).execute_in_process(
        raise_on_error=False)
    assert not result.success
    assert events(result, "STEP_UP_FOR_RETRY", "clean") == 0  # max_retries=2, yet no retry
    assert events(result, "STEP_START", "report") == 0
    [failure] = [ev for ev in result.all_events
                 if ev.event_type_value == "STEP_FAILURE" and ev.step_key == "clean"]
    assert "Failure" in failure.event_specific_data.error.cls_name
    assert fired == ["clean"]  # the final failure runs the team's failure hook
    run_id = only_run(home)
    assert [a["status"] for a in attempt_rows(home, run_id, "clean")] == [
        "contract_violated"]
    assert step_states(home, run_id) == {"rows": "succeeded", "clean": "failed",
                                         "report": "upstream_failed"}
    assert run_status(home, run_id) == "failed"
    bad = pd.read_pickle(home / "store" / "quarantine" / run_id / "clean.1.out")
    assert bad["x"].max() == 7.5
    runbook = home / "runbooks" / run_id / "contract_violation-clean.md"
    assert runbook.is_file() and "clean" in runbook.read_text()


def test_ledger_hooks_record_a_reliable_op_dagster_failed_after_it_returned(
        tmp_path: Path) -> None:
    import dagster as dg

    from reliability.adapters.dagster import ledger_hooks, reliable

    home = tmp_path / "home"

    @reliable(home=home)
    @dg.op
    def totals() -> dict[str, float]:
        return {"n": 3}  # an int: Dagster's type check of the output refuses it

    @dg.op
    def publish(totals) -> None:  # type: ignore[no-untyped-def]
        pass

    @dg.job(name="typed", hooks=ledger_hooks(home=home))
    def typed() -> None:
        publish(totals())

    result = typed.execute_in_process(raise_on_error=False)
    assert not result.success
    [failure] = [ev for ev in result.all_events
                 if ev.event_type_value == "STEP_FAILURE" and ev.step_key == "totals"]
    assert failure.event_specific_data.error.cls_name == "DagsterTypeCheckDidNotPass"
    run_id = only_run(home)
    # the op's try succeeded (recorded from inside), then Dagster failed the step
    assert [a["status"] for a in attempt_rows(home, run_id, "totals")] == ["succeeded"]
    assert step_states(home, run_id) == {"totals": "failed", "publish": "upstream_failed"}
    assert run_status(home, run_id) == "failed"


def _flaky_job(home: Path, fail_tries: int, fired: list[str]) -> Any:
    """A team's job of ops none of which is wrapped, with our ledger hooks: ``fetch``
    raises on its first ``fail_tries`` tries (the RetryPolicy allows 2 retries), then
    ``count`` reads it."""
    import dagster as dg

    from reliability.adapters.dagster import ledger_hooks

    @dg.op(retry_policy=dg.RetryPolicy(max_retries=2))
    def fetch(context) -> dict[str, int]:  # type: ignore[no-untyped-def]
        if context.retry_number < fail_tries:
            raise ConnectionError(f"try {context.retry_number + 1}: upstream refused")
        return {"rows": 3}

    @dg.op
    def count(fetch: dict[str, int]) -> int:
        return fetch["rows"]

    @dg.failure_hook
    def team_alert(context) -> None:  # type: ignore[no-untyped-def]
        fired.append(context.step_key)

    @dg.job(name="team", hooks={team_alert, *ledger_hooks(home=home)})
    def team() -> None:
        count(fetch())

    return team


def test_ledger_hooks_record_a_retried_op_from_dagsters_event_log(tmp_path: Path) -> None:
    from reliability import Pipeline

    home = tmp_path / "home"
    fired: list[str] = []
    result = _flaky_job(home, 1, fired).execute_in_process(raise_on_error=False)
    assert result.success
    assert events(result, "STEP_UP_FOR_RETRY", "fetch") == 1
    assert fired == []  # no failure hook for the retried try
    run_id = assert_retried_once(home, "team", "fetch")  # yet 2 attempts, metric 2
    [first, _] = attempt_rows(home, run_id, "fetch")
    assert (first["error_type"], first["error"]) == ("ConnectionError",
                                                     "try 1: upstream refused")
    # the outputs committed to our store are what our runner commits for those values
    ours = Pipeline("team")
    ours.add(lambda: {"rows": 3}, name="fetch", inputs={})
    ours.add(lambda fetch: fetch["rows"], name="count", inputs={"fetch": "fetch"})
    assert outputs(home, run_id) == runner_outputs(ours, tmp_path / "ours", {})


def test_ledger_hooks_record_a_final_failure_and_the_skipped_downstream_op(
        tmp_path: Path) -> None:
    home = tmp_path / "home"
    fired: list[str] = []
    result = _flaky_job(home, 3, fired).execute_in_process(raise_on_error=False)
    assert not result.success
    assert events(result, "STEP_UP_FOR_RETRY", "fetch") == 2
    assert fired == ["fetch"]  # the failure hook fires once, on the last try
    run_id = only_run(home)
    rows = attempt_rows(home, run_id, "fetch")
    assert [(a["attempt"], a["status"], a["error_type"]) for a in rows] == [
        (1, "failed", "ConnectionError"), (2, "failed", "ConnectionError"),
        (3, "failed", "ConnectionError")]
    assert rows[2]["error"] == "try 3: upstream refused"
    assert step_states(home, run_id) == {"fetch": "failed", "count": "upstream_failed"}
    assert run_status(home, run_id) == "failed"


def test_reliable_refuses_what_is_not_an_op(tmp_path: Path) -> None:
    import dagster as dg

    from reliability.adapters.dagster import reliable
    from reliability.errors import DefinitionError

    with pytest.raises(DefinitionError, match=r"expects a Dagster @op.*Fix: put @reliable"):
        reliable(lambda rows: rows)

    @dg.op(out={"a": dg.Out(), "b": dg.Out()})
    def split() -> Any:
        yield dg.Output(1, "a")
        yield dg.Output(2, "b")

    with pytest.raises(DefinitionError, match=r"yields its outputs.*Fix: return"):
        reliable(split)


def _kill_team_op(tmp_path: Path, job: str) -> tuple[str, list[dict[str, Any]], int]:
    """Run the team's job ``job`` of ``dagster_team_job`` on the multiprocess executor,
    SIGKILL the process of ``clean``'s first try; check that Dagster retried it and the
    run settled. Returns our run id, ``clean``'s attempts and the killed pid."""
    from dagster_runs import kill_first_attempt
    from ledger_checks import attempts_metric

    home = tmp_path / "home"
    result, victim = kill_first_attempt(
        tmp_path, f"__import__('dagster_team_job').{job}(home)", home,
        {"signal_dir": str(tmp_path)}, "clean")
    assert result["success"] and result["restarted"] == ["clean"]
    run_id = only_run(home)
    assert run_id == f"guarded-{result['run_id']}"
    rows = attempt_rows(home, run_id, "clean")
    assert [(a["attempt"], a["status"]) for a in rows] == [(1, "worker_lost"),
                                                           (2, "succeeded")]
    assert rows[0]["worker_pid"] == victim != rows[1]["worker_pid"]
    assert rows[0]["error_type"] == "WorkerLost"
    assert attempts_metric(home, run_id, "guarded", "clean") == {"worker_lost": 1.0,
                                                                "succeeded": 1.0}
    assert step_states(home, run_id) == {"rows": "succeeded", "clean": "succeeded"}
    assert run_status(home, run_id) == "succeeded"
    return run_id, rows, victim


def test_sigkill_of_a_reliable_op_process_is_recorded_and_retried(tmp_path: Path) -> None:
    _kill_team_op(tmp_path, "team_job")


def test_sigkill_of_an_op_under_ledger_hooks_is_recorded_lost_not_failed(
        tmp_path: Path) -> None:
    from reliability import Ledger

    run_id, rows, victim = _kill_team_op(tmp_path, "hooked_job")
    # the lost try says what Dagster saw: its process died, by SIGKILL
    assert f"pid {victim}" in rows[0]["error"] and "SIGKILL" in rows[0]["error"]
    with Ledger(tmp_path / "home" / "ledger.db") as led:
        kinds = [(e["kind"], e["attempt"]) for e in led.events(run_id)
                 if e["step"] == "clean"]
    # lost, then retried by Dagster (not a failure of the step)
    assert [k for k in kinds if k[1] == 1] == [("worker_lost", 1), ("step_retrying", 1)]


def test_reliable_op_of_a_partitioned_job_records_the_partition_as_the_interval(
        tmp_path: Path) -> None:
    import dagster as dg

    from reliability import Ledger
    from reliability.adapters.dagster import reliable

    home = tmp_path / "home"

    @reliable(home=home)
    @dg.op
    def daily(context) -> str:  # type: ignore[no-untyped-def]
        return str(context.partition_key)

    @dg.job(name="daily_job", partitions_def=dg.DailyPartitionsDefinition("2026-01-01"))
    def daily_job() -> None:
        daily()

    result = daily_job.execute_in_process(partition_key="2026-01-02")
    assert result.success and result.output_for_node("daily") == "2026-01-02"
    with Ledger(home / "ledger.db") as led:
        run = led.get_run(only_run(home))
    assert (run.interval_start, run.interval_end) == ("2026-01-02T00:00:00+00:00",
                                                      "2026-01-03T00:00:00+00:00")
    assert run.status == "succeeded"
