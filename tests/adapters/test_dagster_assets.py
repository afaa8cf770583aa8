"""A pipeline as Dagster assets, against real Dagster: ``dagster.materialize`` in process for
retries, contracts as blocking asset checks and digests; an asset job on the multiprocess
executor (a temporary persistent instance) for a killed step process."""

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

from reliability import Ledger  # noqa: E402
from reliability.chaos.faults import ExceptionFault  # noqa: E402
from reliability.chaos.hook import ChaosHook  # noqa: E402

pytestmark = [pytest.mark.dagster, pytest.mark.integration, pytest.mark.timeout(600),
              pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]

def _materialize(home: Path, params: dict[str, Any], instance: Any = None,
                 partition_key: str | None = None, **options: Any) -> Any:
    import dagster as dg

    from reliability.adapters.dagster import resources, run_config, to_assets

    options.setdefault("contracts", False)
    return dg.materialize(to_assets(hp.small, home=home, **options), resources=resources(),
                          run_config=run_config(params), instance=instance,
                          partition_key=partition_key, raise_on_error=False)


def _digests(result: Any) -> dict[str, str]:
    """Each asset's digest as Dagster recorded it in the materialization's metadata."""
    return {m.asset_key.path[-1]: m.metadata["digest"].value
            for m in result.get_asset_materialization_events()
            for m in [m.event_specific_data.materialization]}


def _ledger_verdict(home: Path, run_id: str, step: str) -> dict[str, Any]:
    """What our ledger holds about the contract of ``step``'s attempts: their statuses,
    the contracts checked and the failures of a violation."""
    with Ledger(home / "ledger.db") as led:
        events = [e for e in led.events(run_id) if e["step"] == step]
    return {"attempts": [a["status"] for a in attempt_rows(home, run_id, step)],
            "checked": [e["details"]["contract"] for e in events
                        if e["kind"] == "contract_checked"],
            "failures": [f for e in events if e["kind"] == "contract_violated"
                         for f in e["details"]["failures"]]}


def test_exception_fault_once_is_retried_by_dagster_and_recorded(tmp_path: Path) -> None:
    home = tmp_path / "home"
    chaos = ChaosHook([ExceptionFault(step="transform", error="ConnectionError",
                                      attempts=[1])])
    result = _materialize(home, {}, hooks=[chaos])
    assert result.success
    assert events(result, "STEP_UP_FOR_RETRY", "transform") == 1  # the asset's RetryPolicy
    assert events(result, "STEP_RESTARTED", "transform") == 1
    run_id = assert_retried_once(home, "small", "transform")
    assert run_id == f"small-{result.run_id}"
    assert attempt_rows(home, run_id, "transform")[0]["error_type"] == "ConnectionError"
    assert _digests(result) == outputs(home, run_id) == runner_outputs(
        hp.small, tmp_path / "ours", {})


def _project(root: Path) -> Path:
    """A project directory whose contracts give ``extract`` an output contract."""
    hp.contract_dir(root)
    return root


def test_contract_is_a_blocking_asset_check_that_passes_with_our_verdict(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from reliability.adapters.dagster import CONTRACT_CHECK, to_assets

    monkeypatch.chdir(_project(tmp_path))  # the project's contracts, as the run assembles
    home = tmp_path / "home"
    specs = {a.key.path[-1]: list(a.check_specs) for a in to_assets(hp.small, home=home)}
    assert {s: [(c.name, c.blocking) for c in v] for s, v in specs.items()} == {
        "extract": [(CONTRACT_CHECK, True)], "transform": [], "summary": [],
        "fingerprint": []}
    result = _materialize(home, {}, contracts=True)
    assert result.success
    [check] = result.get_asset_check_evaluations()
    run_id = only_run(home)
    assert (check.asset_key.path, check.check_name, check.passed, check.blocking) == (
        ["extract"], CONTRACT_CHECK, True, True)
    ours = _ledger_verdict(home, run_id, "extract")
    assert ours == {"attempts": ["succeeded"], "checked": ["small.extract.output"],
                    "failures": []}
    assert check.metadata["contracts"].value == "small.extract.output (output)"
    assert check.metadata["reliability_run"].value == run_id


def test_broken_contract_fails_its_blocking_check_and_stops_downstream_assets(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dagster as dg

    from reliability.adapters.dagster import CONTRACT_CHECK

    monkeypatch.chdir(_project(tmp_path))
    home = tmp_path / "home"
    with dg.DagsterInstance.ephemeral() as instance:
        result = _materialize(home, {"bad": True}, instance=instance, contracts=True)
        assert not result.success
        for step in hp.small.steps:  # nothing materialized: the bad output is quarantined
            assert instance.get_latest_materialization_event(dg.AssetKey(step)) is None
    [failure] = [ev for ev in result.all_events
                 if ev.event_type_value == "STEP_FAILURE" and ev.step_key == "extract"]
    assert failure.event_specific_data.error.cls_name == "DagsterAssetCheckFailedError"
    assert events(result, "STEP_UP_FOR_RETRY", "extract") == 0  # max_retries=2, no retry
    for step in ("transform", "summary", "fingerprint"):
        assert events(result, "STEP_START", step) == 0
    run_id = only_run(home)
    assert_contract_stop(home, run_id)  # 1 attempt, downstream skipped, quarantine, runbook
    for step in ("transform", "summary", "fingerprint"):
        assert attempt_rows(home, run_id, step) == []
    # the check Dagster reports is the verdict our ledger holds
    [check] = result.get_asset_check_evaluations()
    assert (check.check_name, check.passed, check.blocking) == (CONTRACT_CHECK, False, True)
    assert check.severity == dg.AssetCheckSeverity.ERROR
    ours = _ledger_verdict(home, run_id, "extract")
    assert ours["attempts"] == ["contract_violated"]
    assert ours["failures"] and check.metadata["failures"].value == ours["failures"]
    assert check.metadata["broken"].value == "x: in_range(0.0, 1.0)"
    assert Path(check.metadata["quarantined"].value).is_file()


def test_sigkill_of_an_asset_step_process_is_recorded_and_retried(tmp_path: Path) -> None:
    home = tmp_path / "home"
    params = {"hold": "transform", "signal_dir": str(tmp_path)}
    result, victim = kill_first_attempt(
        tmp_path, 'to_definitions(hp.small, home=home, contracts=False).resolve_job_def("small")',
        home, params, "transform")
    assert result["success"] and result["restarted"] == ["transform"]
    assert result["materialized"] == sorted(hp.small.steps)
    run_id = assert_kill_recovered(home, "transform", victim, tmp_path / "ours", params)
    assert run_id == f"small-{result['run_id']}"


def test_reference_pipeline_assets_equal_our_runners_outputs(tmp_path: Path) -> None:
    import dagster as dg

    from pipelines.reference import pipeline
    from reliability.adapters.dagster import resources, run_config, to_assets

    result = dg.materialize(to_assets(pipeline, home=tmp_path / "home", contracts=False),
                            resources=resources(), run_config=run_config({"seed": 5}))
    assert result.success
    assert _digests(result) == runner_outputs(pipeline, tmp_path / "ours", {"seed": 5})
    assert set(_digests(result)) == set(pipeline.steps)


def test_asset_keys_take_a_prefix_and_after_dependencies(tmp_path: Path) -> None:
    import dagster as dg

    from reliability import Pipeline
    from reliability.adapters.dagster import resources, run_config, to_assets

    pipe = Pipeline("ordered")
    pipe.add(lambda: 1, name="load", inputs={})
    pipe.add(lambda: 2, name="audit", inputs={}, after=["load"])
    pipe.add(lambda load: load + 1, name="use", inputs={"load": "load"})
    assets = to_assets(pipe, key_prefix=["team", "ordered"], home=tmp_path / "home",
                       contracts=False, sla=False)
    deps = {a.key.to_user_string(): sorted(k.to_user_string()
                                           for k in a.asset_deps[a.key]) for a in assets}
    assert deps == {"team/ordered/load": [], "team/ordered/audit": ["team/ordered/load"],
                    "team/ordered/use": ["team/ordered/load"]}
    # each asset's code version is its own step's source (a change stales only that asset)
    assert len({a.code_versions_by_key[a.key] for a in assets}) == 3
    result = dg.materialize(assets, resources=resources(), run_config=run_config())
    assert result.success
    assert set(_digests(result)) == {"load", "audit", "use"}


def test_each_daily_partition_is_a_run_with_its_interval_and_our_runners_outputs(
        tmp_path: Path) -> None:
    import datetime as dt

    import dagster as dg

    from reliability import DataInterval
    from reliability.adapters.dagster import resources, to_assets

    home = tmp_path / "home"
    assets = to_assets(hp.daily, home=home, contracts=False,
                       partitions_def=dg.DailyPartitionsDefinition("2026-01-01"))
    assert {a.key.path[-1]: a.partitions_def.get_partition_keys()[:2] for a in assets} == {
        "readings": ["2026-01-01", "2026-01-02"], "totals": ["2026-01-01", "2026-01-02"]}
    # no backfill policy: Dagster backfills a range one partition per run (each its own
    # interval), never as one run whose outputs its IO manager could not store
    assert {a.backfill_policy for a in assets} == {None}
    seen: dict[str, dict[str, str]] = {}
    with dg.DagsterInstance.ephemeral() as instance:
        for day in ("2026-01-02", "2026-01-05"):
            result = dg.materialize(assets, partition_key=day, resources=resources(),
                                    instance=instance)
            assert result.success
            run_id = f"daily-{result.run_id}"
            start = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)
            interval = DataInterval(start, start + dt.timedelta(days=1))
            with Ledger(home / "ledger.db") as led:
                run = led.get_run(run_id)
            assert (run.interval_start, run.interval_end, run.status) == (
                interval.start.isoformat(), interval.end.isoformat(), "succeeded")
            # byte for byte what our runner commits for that interval
            assert _digests(result) == outputs(home, run_id) == runner_outputs(
                hp.daily, tmp_path / "ours", {}, interval=interval)
            assert {m.partition for m in result.asset_materializations_for_node("totals")
                    } == {day}
            seen[day] = _digests(result)
        assert instance.get_materialized_partitions(dg.AssetKey("totals")) == {
            "2026-01-02", "2026-01-05"}
    assert seen["2026-01-02"]["readings"] != seen["2026-01-05"]["readings"]  # its own data
    with Ledger(home / "ledger.db") as led:
        assert len(led.list_runs()) == 2  # one run of ours per materialized partition


@pytest.mark.parametrize("kind", ["static", "dynamic", "multi"])
def test_partitions_that_are_not_time_windows_are_refused(tmp_path: Path, kind: str) -> None:
    import dagster as dg

    from reliability.adapters.dagster import to_assets, to_definitions, to_job
    from reliability.errors import DefinitionError

    partitions = {
        "static": lambda: dg.StaticPartitionsDefinition(["eu", "us"]),
        "dynamic": lambda: dg.DynamicPartitionsDefinition(name="customers"),
        "multi": lambda: dg.MultiPartitionsDefinition({
            "day": dg.DailyPartitionsDefinition("2026-01-01"),
            "region": dg.StaticPartitionsDefinition(["eu", "us"])}),
    }[kind]()
    name = type(partitions).__name__
    fix = (rf"{name}\(\.\.\.\)\) for pipeline 'daily': its partitions are not time "
           r"windows.*Fix: pass a time-window partitions definition")
    with pytest.raises(DefinitionError, match=rf"to_assets\(partitions_def={fix}"):
        to_assets(hp.daily, home=tmp_path, partitions_def=partitions)
    with pytest.raises(DefinitionError, match=rf"to_assets\(partitions_def={fix}"):
        to_definitions(hp.daily, home=tmp_path, partitions_def=partitions)
    with pytest.raises(DefinitionError, match=rf"to_job\(partitions_def={fix}"):
        to_job(hp.daily, home=tmp_path, partitions_def=partitions)


def test_a_partition_in_another_time_zone_is_its_instants_in_utc(tmp_path: Path) -> None:
    import datetime as dt

    import dagster as dg

    from reliability import DataInterval
    from reliability.adapters.dagster import resources, to_assets

    home = tmp_path / "home"
    new_york = dg.DailyPartitionsDefinition("2026-01-01", timezone="America/New_York")
    result = dg.materialize(to_assets(hp.daily, home=home, contracts=False,
                                      partitions_def=new_york),
                            partition_key="2026-01-02", resources=resources())
    assert result.success
    # midnight in New York is 05:00 UTC: steps see (and the ledger keeps) that, in UTC
    start = dt.datetime(2026, 1, 2, 5, tzinfo=dt.UTC)
    interval = DataInterval(start, start + dt.timedelta(days=1))
    run_id = only_run(home)
    with Ledger(home / "ledger.db") as led:
        run = led.get_run(run_id)
    assert (run.interval_start, run.interval_end) == (interval.start.isoformat(),
                                                      interval.end.isoformat())
    assert _digests(result) == runner_outputs(hp.daily, tmp_path / "ours", {},
                                              interval=interval)


def test_a_partition_that_breaks_its_contract_fails_its_check_and_stops_downstream(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dagster as dg

    monkeypatch.chdir(_project(tmp_path))
    home = tmp_path / "home"
    daily = dg.DailyPartitionsDefinition("2026-01-01")
    with dg.DagsterInstance.ephemeral() as instance:
        result = _materialize(home, {"bad": True}, instance=instance, contracts=True,
                              partitions_def=daily, partition_key="2026-01-03")
        assert not result.success
        assert instance.get_materialized_partitions(dg.AssetKey("extract")) == set()
    [check] = result.get_asset_check_evaluations()
    assert (check.check_name, check.passed) == ("contract", False)
    run_id = only_run(home)
    assert_contract_stop(home, run_id)  # 1 attempt, downstream skipped, quarantine, runbook
    with Ledger(home / "ledger.db") as led:
        run = led.get_run(run_id)
    assert (run.interval_start, run.interval_end) == ("2026-01-03T00:00:00+00:00",
                                                      "2026-01-04T00:00:00+00:00")


def test_the_job_of_partitioned_definitions_runs_a_partition_with_its_interval(
        tmp_path: Path) -> None:
    import dagster as dg

    from reliability.adapters.dagster import to_definitions

    home = tmp_path / "home"
    daily = dg.DailyPartitionsDefinition("2026-01-01")
    job = to_definitions(hp.daily, home=home, contracts=False,
                         partitions_def=daily).resolve_job_def("daily")
    assert job.partitions_def == daily
    result = job.execute_in_process(partition_key="2026-01-07")
    assert result.success
    with Ledger(home / "ledger.db") as led:
        run = led.get_run(only_run(home))
    assert (run.interval_start, run.interval_end, run.status) == (
        "2026-01-07T00:00:00+00:00", "2026-01-08T00:00:00+00:00", "succeeded")
