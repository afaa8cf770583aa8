"""``reliable`` around a team's own ``async def`` ZenML steps, against real ZenML on the
local stack: ZenML 0.98 runs an async step function to completion on an event loop of its
own (``BaseStep.call_entrypoint``); wrapped, each try awaits the body between our hooks, so
contracts, chaos faults, the ledger and the stop on a violation work as for a plain step."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from hosts import require_host

require_host("zenml")

import pandas as pd  # noqa: E402
from ledger_checks import attempt_rows, only_run, outputs, run_status, step_states  # noqa: E402
from test_zenml import run_in_step_processes, zenml_config  # noqa: E402,F401
from test_zenml_reliable_steps import (  # noqa: E402
    CONTRACT,
    RETRY,
    _bodies,
    _digest,
    _step_runs,
    _trace,
    _zenml_run,
)
from zenml import pipeline, step  # noqa: E402

from reliability.adapters.zenml import reliable  # noqa: E402
from reliability.chaos.faults import ExceptionFault  # noqa: E402
from reliability.chaos.hook import ChaosHook  # noqa: E402

pytestmark = [pytest.mark.zenml, pytest.mark.integration, pytest.mark.timeout(600),
              pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]

SUMMARIZE_FAILS_ONCE = [ChaosHook([ExceptionFault(step="summarize", error="ConnectionError",
                                                  attempts=[1])])]


# -- a team's own async steps (module level, as ZenML needs them) --------------------------
@step(retry=RETRY, enable_cache=False)
async def fetch(n: int, bad: bool, trace: str) -> pd.DataFrame:
    await asyncio.sleep(0)  # the body really awaits
    _trace(trace, "fetch")
    x = [i / n for i in range(n)]
    if bad:
        x[2] = 7.5
    return pd.DataFrame({"id": list(range(n)), "x": x})


@step(retry=RETRY, enable_cache=False)
async def summarize(frame: pd.DataFrame, trace: str) -> dict[str, float]:
    await asyncio.sleep(0)
    _trace(trace, "summarize")
    return {"rows": float(len(frame)), "total": round(float(frame["x"].sum()), 9)}


def async_pipeline(**options: Any) -> Any:
    g_fetch, g_summarize = (reliable(s, pipeline="team_async", **options)
                            for s in (fetch, summarize))

    @pipeline(name="team_async", enable_cache=False)
    def team_async(bad: bool = False, trace: str = "") -> None:
        g_summarize(g_fetch(n=20, bad=bad, trace=trace), trace=trace)

    return team_async


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "contracts" / "team_async").mkdir(parents=True)
    (tmp_path / "contracts" / "team_async" / "fetch.output.yaml").write_text(
        CONTRACT.replace("team_etl", "team_async").replace("step: load", "step: fetch"))
    (tmp_path / "trace").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_an_async_step_is_awaited_between_our_hooks_and_retried_by_zenml(
        project: Path) -> None:
    home = project / "home"
    run = async_pipeline(home=home, hooks=f"{__name__}:SUMMARIZE_FAILS_ONCE")(
        trace=str(project / "trace"))
    assert str(run.status.value) == "completed"
    run_id = only_run(home)
    rows = attempt_rows(home, run_id, "summarize")
    assert [(a["attempt"], a["status"], a["error_type"]) for a in rows] == [
        (1, "failed", "ConnectionError"), (2, "succeeded", None)]
    assert {a["worker_pid"] for a in rows} == {os.getpid()}
    assert [v.version for v in _step_runs(run, "summarize")] == [1, 2]
    assert sorted(_bodies(project)) == ["fetch", "summarize"]  # the fault came first
    assert run_status(home, run_id) == "succeeded"
    # what the bodies returned (awaited here too), by digest in our ledger and in ZenML
    frame = asyncio.run(fetch.entrypoint(n=20, bad=False, trace=""))
    summary = asyncio.run(summarize.entrypoint(frame, trace=""))
    assert outputs(home, run_id) == {"fetch": _digest(frame, project),
                                     "summarize": _digest(summary, project)}
    assert run.steps["summarize"].outputs["output"][0].load() == summary
    pd.testing.assert_frame_equal(run.steps["fetch"].outputs["output"][0].load(), frame)


def test_a_contract_violation_in_an_async_step_runs_its_body_once(project: Path) -> None:
    home = project / "home"
    with pytest.raises(RuntimeError, match="failure in step"):
        async_pipeline(home=home)(bad=True, trace=str(project / "trace"))
    run_id = only_run(home)
    assert [a["status"] for a in attempt_rows(home, run_id, "fetch")] == [
        "contract_violated"]
    assert _bodies(project) == ["fetch"]  # ZenML's two retries refused before the body
    assert [v.version for v in _step_runs(_zenml_run(run_id), "fetch")] == [1, 2, 3]
    assert step_states(home, run_id) == {"fetch": "failed", "summarize": "upstream_failed"}
    assert run_status(home, run_id) == "failed"
    bad = pd.read_pickle(home / "store" / "quarantine" / run_id / "fetch.1.out")
    assert bad["x"].max() == 7.5


def test_an_async_step_loaded_by_zenml_in_a_process_per_step_is_guarded(
        project: Path) -> None:
    """ZenML loads each wrapped async step by its source in a fresh process: it is awaited
    there between our hooks, the options come from the step's configuration."""
    home = project / "home"
    trace = str(project / "trace")
    pipe = async_pipeline(home=home).with_options(parameters={"trace": trace})
    steps = ["fetch", "summarize"]
    pids = dict(zip(steps, run_in_step_processes(pipe, steps, project), strict=True))
    run_id = only_run(home)
    assert {s: [(a["status"], a["worker_pid"]) for a in attempt_rows(home, run_id, s)]
            for s in steps} == {s: [("succeeded", pids[s])] for s in steps}
    assert _bodies(project) == steps
    assert run_status(home, run_id) == "succeeded"
    frame = asyncio.run(fetch.entrypoint(n=20, bad=False, trace=""))
    assert outputs(home, run_id)["fetch"] == _digest(frame, project)
