"""``reliable`` around a team's own ZenML steps, against real ZenML on the local stack: the
steps below are plain ZenML steps; each test wraps them and runs a ZenML pipeline of them.

ZenML's configuration and SQLite store live in a temporary directory; each test runs in a
temporary project directory (its ``contracts/``) with its own reliability home."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hosts import require_host

require_host("zenml")

import pandas as pd  # noqa: E402
from helpers import wait_for  # noqa: E402
from ledger_checks import (  # noqa: E402
    attempt_rows,
    attempts_metric,
    only_run,
    outputs,
    run_status,
    step_states,
)
from test_zenml import run_in_step_processes, zenml_config  # noqa: E402,F401
from zenml import pipeline, step  # noqa: E402
from zenml.config.retry_config import StepRetryConfig  # noqa: E402

from reliability.adapters.core import AttemptNotRetryable  # noqa: E402
from reliability.adapters.zenml import reliable  # noqa: E402
from reliability.chaos.faults import ExceptionFault  # noqa: E402
from reliability.chaos.hook import ChaosHook  # noqa: E402

pytestmark = [pytest.mark.zenml, pytest.mark.integration, pytest.mark.timeout(600),
              pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]

HERE = Path(__file__).parent
RETRY = StepRetryConfig(max_retries=2, delay=0, backoff=1)
CLEAN_FAILS_ONCE = [ChaosHook([ExceptionFault(step="clean", error="ConnectionError",
                                              attempts=[1])])]
SCALE_FAILS_ONCE = [ChaosHook([ExceptionFault(step="scale", error="ConnectionError",
                                              attempts=[1])])]
PUBLISH_FAILS_ONCE = [ChaosHook([ExceptionFault(step="publish", error="ConnectionError",
                                                attempts=[1])])]


# -- a team's own steps (module level, as ZenML needs them) --------------------------------
def _trace(trace: str, name: str) -> None:
    """Each run of a step's body leaves a line: tests count body executions."""
    if trace:
        with open(Path(trace) / "bodies.log", "a") as f:
            f.write(f"{name} {os.getpid()}\n")


@step(retry=RETRY, enable_cache=False)
def load(n: int, bad: bool, trace: str, hold: bool = False) -> pd.DataFrame:
    _trace(trace, "load")
    if hold:  # mark that the body runs, then wait to be killed
        marker = Path(trace) / "load.running"
        marker.with_suffix(".tmp").write_text(str(os.getpid()))
        marker.with_suffix(".tmp").replace(marker)
        wait_for((Path(trace) / "release").exists, timeout=120, what="release")
    x = [i / n for i in range(n)]
    if bad:
        x[2] = 7.5
    return pd.DataFrame({"id": list(range(n)), "x": x})


@step(retry=RETRY, enable_cache=False)
def clean(frame: pd.DataFrame, trace: str) -> dict[str, float]:
    _trace(trace, "clean")
    return {"rows": float(len(frame)), "total": round(float(frame["x"].sum()), 9)}


def team_on_end(exc: BaseException | None = None) -> None:
    """The team's own ``on_end`` hook of ``report``."""
    from zenml import get_step_context

    trace = get_step_context().step_run.config.parameters.get("trace")
    _trace(str(trace or ""), f"on_end:{type(exc).__name__}")


@step(retry=RETRY, enable_cache=False, on_end=team_on_end)
def report(summary: dict[str, float], trace: str) -> str:
    _trace(trace, "report")
    stop = Path(trace) / "exit-once" if trace else None
    if stop is not None and stop.exists():  # the process is asked to exit mid-step
        stop.unlink()
        raise SystemExit(3)
    return f"{summary['rows']:.0f} rows, total {summary['total']}"


@reliable(pipeline="team_etl", hooks=f"{__name__}:PUBLISH_FAILS_ONCE")  # the name is rebound
@step(retry=RETRY, enable_cache=False)
def publish(frame: pd.DataFrame, trace: str) -> str:
    _trace(trace, "publish")
    return f"published {len(frame)} rows"


@step(retry=RETRY, enable_cache=False)
def scale(frame: pd.DataFrame, factor: float, trace: str) -> pd.DataFrame:
    _trace(trace, "scale")
    return frame.assign(x=frame["x"] * factor)


@step(retry=RETRY, enable_cache=False)
def tally(frame: pd.DataFrame, trace: str) -> int:
    _trace(trace, "tally")
    return len(frame)


@step(retry=RETRY, enable_cache=False)
def mistyped(frame: pd.DataFrame, trace: str) -> int:
    _trace(trace, "mistyped")
    return str(len(frame))  # type: ignore[return-value]  # ZenML refuses it after the try


CONTRACT = """\
pipeline: team_etl
step: load
direction: output
schema:
  strict: false
  columns:
    x: {dtype: float64, in_range: {min_value: 0, max_value: 1}}
"""


def team_pipeline(**options: Any) -> Any:
    """The team's pipeline of its own steps, each wrapped by ``reliable``."""
    g_load, g_clean, g_report = (reliable(s, pipeline="team_etl", **options)
                                 for s in (load, clean, report))

    @pipeline(name="team_etl", enable_cache=False)
    def team_etl(n: int = 20, bad: bool = False, trace: str = "", hold: bool = False) -> None:
        frame = g_load(n=n, bad=bad, trace=trace, hold=hold)
        g_report(g_clean(frame, trace=trace), trace=trace)

    return team_etl


def branched_pipeline(mode: str = "continue_on_failure", **options: Any) -> Any:
    """load -> scale -> clean -> report, and load -> tally (a branch of its own, which
    ZenML runs after scale), each wrapped by ``reliable``; ``mode`` is ZenML's execution
    mode."""
    g_load, g_scale, g_clean, g_report, g_tally = (
        reliable(s, pipeline="team_etl", **options) for s in (load, scale, clean, report,
                                                               tally))

    @pipeline(name="team_etl", enable_cache=False, execution_mode=mode)
    def team_etl(factor: float = 1.0, trace: str = "") -> None:
        frame = g_load(n=20, bad=False, trace=trace)
        g_report(g_clean(g_scale(frame, factor=factor, trace=trace), trace=trace),
                 trace=trace)
        g_tally(frame, trace=trace)

    return team_etl


# -- fixtures ----------------------------------------------------------------------------
@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project directory with the team's contract; the tests run in it."""
    (tmp_path / "contracts" / "team_etl").mkdir(parents=True)
    (tmp_path / "contracts" / "team_etl" / "load.output.yaml").write_text(CONTRACT)
    (tmp_path / "contracts" / "team_etl" / "scale.output.yaml").write_text(
        CONTRACT.replace("step: load", "step: scale"))
    (tmp_path / "trace").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _trace_lines(project: Path) -> list[str]:
    log = project / "trace" / "bodies.log"
    return [line.split()[0] for line in log.read_text().splitlines()] if log.exists() else []


def _bodies(project: Path) -> list[str]:
    """The step bodies that ran, in order."""
    return [line for line in _trace_lines(project) if not line.startswith("on_end:")]


def _zenml_run(run_id: str) -> Any:
    """ZenML's run behind our run ``<pipeline>-<ZenML run id>``."""
    from zenml.client import Client

    return Client().get_pipeline_run(run_id.partition("-")[2], hydrate=True)


def _runs_show(home: Path, run_id: str) -> dict[str, Any]:
    """``reliability runs show RUN --json``, as a user would read the run."""
    import contextlib
    import io
    import json

    from reliability.cli.main import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["runs", "show", run_id, "--home", str(home), "--json"]) == 0
    return dict(json.loads(out.getvalue()))


def _digest(value: Any, tmp: Path) -> str:
    from reliability.runner.store import encode

    return encode(value, tmp / "encoded.bin")[0]


# -- the four proofs ---------------------------------------------------------------------
def test_a_fault_once_is_retried_by_zenml_and_every_try_is_in_the_ledger(project: Path
                                                                        ) -> None:
    home = project / "home"
    trace = str(project / "trace")
    run = team_pipeline(home=home, hooks=f"{__name__}:CLEAN_FAILS_ONCE")(trace=trace)
    assert str(run.status.value) == "completed"
    run_id = only_run(home)
    assert run_id == f"team_etl-{run.id}"
    rows = attempt_rows(home, run_id, "clean")
    assert [(a["attempt"], a["status"], a["error_type"]) for a in rows] == [
        (1, "failed", "ConnectionError"), (2, "succeeded", None)]
    assert {a["worker_pid"] for a in rows} == {os.getpid()}  # the local orchestrator
    assert attempts_metric(home, run_id, "team_etl", "clean") == {"failed": 1.0,
                                                                 "succeeded": 1.0}
    assert [v.version for v in _step_runs(run, "clean")] == [1, 2]  # ZenML's own retry
    assert sorted(_bodies(project)) == ["clean", "load", "report"]  # the fault came first
    assert run_status(home, run_id) == "succeeded"
    # the digests in the ledger are those of the values the steps returned
    expected = {"load": load.entrypoint(n=20, bad=False, trace="")}
    expected["clean"] = clean.entrypoint(expected["load"], trace="")
    expected["report"] = report.entrypoint(expected["clean"], trace="")
    assert outputs(home, run_id) == {s: _digest(v, project) for s, v in expected.items()}
    for s in ("clean", "report"):  # and ZenML handed the same values downstream
        assert run.steps[s].outputs["output"][0].load() == expected[s]


def test_a_contract_violation_runs_the_body_once_and_stops_the_run(project: Path) -> None:
    home = project / "home"
    with pytest.raises(RuntimeError, match="failure in step"):
        team_pipeline(home=home, sla=True)(bad=True, trace=str(project / "trace"))
    run_id = only_run(home)
    assert [a["status"] for a in attempt_rows(home, run_id, "load")] == [
        "contract_violated"]
    assert _bodies(project) == ["load"]  # ZenML tried again twice: refused before the body
    zrun = _zenml_run(run_id)
    assert str(zrun.status.value) == "failed"
    assert [v.version for v in _step_runs(zrun, "load")] == [1, 2, 3]
    assert "clean" not in zrun.steps and "report" not in zrun.steps  # downstream never ran
    for s in ("clean", "report"):
        assert attempt_rows(home, run_id, s) == []
    # the steps ZenML skipped are upstream_failed in our ledger, as in a run of ours
    assert step_states(home, run_id) == {"load": "failed", "clean": "upstream_failed",
                                         "report": "upstream_failed"}
    assert run_status(home, run_id) == "failed"
    shown = _runs_show(home, run_id)
    assert {s["step"]: s["status"] for s in shown["steps"]} == step_states(home, run_id)
    assert sorted(e["step"] for e in shown["events"] if e["kind"] == "step_skipped") == [
        "clean", "report"]
    bad = pd.read_pickle(home / "store" / "quarantine" / run_id / "load.1.out")
    assert bad["x"].max() == 7.5
    runbook = home / "runbooks" / run_id / "contract_violation-load.md"
    assert "load" in runbook.read_text() and "in_range" in runbook.read_text()


@pytest.mark.parametrize("mode", ["continue_on_failure", "stop_on_failure", "fail_fast"])
def test_a_violation_in_a_middle_step_quarantines_it_and_fails_what_zenml_skips(
        project: Path, mode: str) -> None:
    """scale breaks its contract: ZenML's two retries are refused before the body, the bad
    output is quarantined, and the steps ZenML then skips -- those after scale, and with
    ``stop_on_failure`` or ``fail_fast`` every step not yet run -- are upstream_failed in
    our ledger."""
    home = project / "home"
    raised = (RuntimeError, "failure in step") if mode != "fail_fast" else (
        AttemptNotRetryable, "'scale' already failed")  # fail_fast re-raises the step's
    with pytest.raises(raised[0], match=raised[1]):
        branched_pipeline(mode, home=home, sla=True)(factor=10.0, trace=str(project / "trace"))
    run_id = only_run(home)
    assert [a["status"] for a in attempt_rows(home, run_id, "scale")] == [
        "contract_violated"]
    assert [v.version for v in _step_runs(_zenml_run(run_id), "scale")] == [1, 2, 3]
    bad = pd.read_pickle(home / "store" / "quarantine" / run_id / "scale.1.out")
    assert bad["x"].max() == pytest.approx(9.5)
    ran = ["load", "scale", "tally"] if mode == "continue_on_failure" else ["load", "scale"]
    assert _bodies(project) == ran
    states = step_states(home, run_id)
    assert states == {"load": "succeeded", "scale": "failed", "clean": "upstream_failed",
                      "report": "upstream_failed",
                      "tally": "succeeded" if "tally" in ran else "upstream_failed"}
    assert run_status(home, run_id) == "failed"
    shown = _runs_show(home, run_id)
    skipped = {e["step"]: e["details"] for e in shown["events"]
               if e["kind"] == "step_skipped"}
    assert sorted(skipped) == sorted(s for s, v in states.items() if v == "upstream_failed")
    assert all("scale" in json.dumps(d) for d in skipped.values())
    runbook = home / "runbooks" / run_id / "contract_violation-scale.md"
    text = runbook.read_text()
    assert "in_range" in text and "| Run outcome | failed |" in text


def test_a_step_after_an_unwrapped_one_is_upstream_failed_too(project: Path) -> None:
    """load (wrapped) -> clean (a plain ZenML step) -> report (wrapped): our ledger holds
    the wrapped steps only, report after load through clean."""
    home = project / "home"
    g_load, g_report = (reliable(s, pipeline="team_etl", home=home) for s in (load, report))

    @pipeline(name="team_etl", enable_cache=False)
    def team_etl(trace: str = "") -> None:
        g_report(clean(g_load(n=20, bad=True, trace=trace), trace=trace), trace=trace)

    with pytest.raises(RuntimeError, match="failure in step"):
        team_etl(trace=str(project / "trace"))
    run_id = only_run(home)
    assert step_states(home, run_id) == {"load": "failed", "report": "upstream_failed"}
    assert run_status(home, run_id) == "failed"
    assert _bodies(project) == ["load"]


@pytest.mark.parametrize("contracts", [True, False])
def test_a_return_value_zenml_refuses_fails_the_try_in_the_ledger(
        project: Path, contracts: bool) -> None:
    """ZenML checks a step's return value against its annotation after the try's on_end:
    the wrapper checks it first (the project's interface contract, or with contracts off
    the wrapper's own check), so no try is committed and the steps ZenML then skips are
    upstream_failed."""
    home = project / "home"
    g_load, g_mistyped, g_clean = (
        reliable(s, pipeline="team_etl", home=home, contracts=contracts)
        for s in (load, mistyped, clean))

    @pipeline(name="team_etl", enable_cache=False)
    def team_etl(trace: str = "") -> None:
        frame = g_load(n=20, bad=False, trace=trace)
        g_clean(frame, trace=trace, after=g_mistyped(frame, trace=trace))

    with pytest.raises(RuntimeError, match="failure in step"):
        team_etl(trace=str(project / "trace"))
    run_id = only_run(home)
    rows = attempt_rows(home, run_id, "mistyped")
    if contracts:  # a contract violation: not retried, the value quarantined
        assert [(a["status"], a["error_type"]) for a in rows] == [
            ("contract_violated", "ContractViolation")]
        quarantined = home / "store" / "quarantine" / run_id / "mistyped.1.out"
        assert json.loads(quarantined.read_text()) == "20"  # the value, as JSON
    else:  # ZenML retries its own refusal: each try fails
        assert [(a["attempt"], a["status"], a["error_type"]) for a in rows] == [
            (n, "failed", "StepOutputRefused") for n in (1, 2, 3)]
    assert "return is str, annotated int" in rows[0]["error"]
    assert _bodies(project).count("mistyped") == len(rows)
    assert [v.version for v in _step_runs(_zenml_run(run_id), "mistyped")] == [1, 2, 3]
    assert step_states(home, run_id) == {"load": "succeeded", "mistyped": "failed",
                                         "clean": "upstream_failed"}
    assert run_status(home, run_id) == "failed"


def test_a_violation_on_zenmls_retry_stops_the_retries_there(project: Path) -> None:
    """scale's first try fails (a fault), ZenML's retry runs the body and breaks the
    contract: its last retry is refused, the second try's output is quarantined."""
    home = project / "home"
    with pytest.raises(RuntimeError, match="failure in step"):
        branched_pipeline(home=home, hooks=f"{__name__}:SCALE_FAILS_ONCE")(
            factor=10.0, trace=str(project / "trace"))
    run_id = only_run(home)
    assert [(a["attempt"], a["status"]) for a in attempt_rows(home, run_id, "scale")] == [
        (1, "failed"), (2, "contract_violated")]
    assert [v.version for v in _step_runs(_zenml_run(run_id), "scale")] == [1, 2, 3]
    assert _bodies(project).count("scale") == 1  # the fault came before the first body
    bad = pd.read_pickle(home / "store" / "quarantine" / run_id / "scale.2.out")
    assert bad["x"].max() == pytest.approx(9.5)
    assert step_states(home, run_id)["clean"] == "upstream_failed"
    assert run_status(home, run_id) == "failed"


def test_a_try_without_a_result_is_closed_by_on_end_and_the_teams_hook_still_runs(
        project: Path) -> None:
    home = project / "home"
    (project / "trace" / "exit-once").write_text("")
    run = team_pipeline(home=home)(trace=str(project / "trace"))
    assert str(run.status.value) == "completed"
    rows = attempt_rows(home, only_run(home), "report")
    assert [(a["attempt"], a["status"], a["error_type"]) for a in rows] == [
        (1, "failed", "StepStopped"), (2, "succeeded", None)]
    assert "SystemExit" in rows[0]["error"]
    # ZenML's on_end fired per try: ours closed the first, the team's ran after it
    assert [b for b in _trace_lines(project) if b.startswith(("report", "on_end"))] == [
        "report", "on_end:SystemExit", "report", "on_end:NoneType"]


def test_wrapped_steps_run_through_our_hooks_in_a_process_per_step(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ZenML loads a wrapped step by its source in a process that never built it (one
    wrapped by a call, one whose module name was rebound by ``@reliable``): our hooks, the
    ledger and the options from the step's configuration are there."""
    home = project / "home"
    monkeypatch.setenv("RELIABILITY_HOME", str(home))  # publish's home (no home= given)
    trace = str(project / "trace")
    g_load = reliable(load, pipeline="team_etl", home=home)

    @pipeline(name="team_etl", enable_cache=False)
    def team_etl() -> None:
        publish(g_load(n=20, bad=False, trace=trace), trace=trace)

    steps = ["load", "publish"]
    pids = dict(zip(steps, run_in_step_processes(team_etl, steps, project), strict=True))
    run_id = only_run(home)
    rows = {s: [(a["attempt"], a["status"], a["worker_pid"]) for a in
                attempt_rows(home, run_id, s)] for s in steps}
    assert rows == {"load": [(1, "succeeded", pids["load"])],
                    "publish": [(1, "failed", pids["publish"]),  # hooks from the reference
                                (2, "succeeded", pids["publish"])]}  # ZenML's retry
    assert os.getpid() not in pids.values()
    assert _bodies(project) == ["load", "publish"]


def test_a_sigkill_of_the_pipeline_process_ends_the_run_the_ledger_keeps_the_try(
        project: Path) -> None:
    """The local orchestrator runs steps in the pipeline's own process: a SIGKILL there ends
    the run (ZenML does not retry it); the ledger keeps the try, ``running``, with the pid
    of the killed process."""
    home = project / "home"
    trace = project / "trace"
    script = project / "team_run.py"
    script.write_text(
        "import sys\n"
        f"sys.path[:0] = [{str(HERE)!r}, {str(HERE.parent)!r}]\n"
        "from test_zenml_reliable_steps import team_pipeline\n"
        f"team_pipeline(home={str(home)!r})(trace={str(trace)!r}, hold=True)\n")
    proc = subprocess.Popen([sys.executable, str(script)], cwd=project,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    marker = trace / "load.running"
    try:
        wait_for(lambda: marker.exists() or proc.poll() is not None, timeout=300,
                 what="the load step's body")
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert int(marker.read_text()) == proc.pid  # the step runs in the pipeline process
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    run_id = only_run(home)
    [row] = attempt_rows(home, run_id, "load")
    assert (row["status"], row["worker_pid"]) == ("running", proc.pid)
    zrun = _zenml_run(run_id)
    assert str(zrun.status.value) in {"running", "initializing"}  # nobody ends it
    assert _bodies(project) == ["load"]


def _step_runs(run: Any, name: str) -> list[Any]:
    """Every try ZenML made of step ``name`` in ``run`` (a retried step has one per try)."""
    from zenml.client import Client

    runs = Client().list_run_steps(pipeline_run_id=run.id, name=name, size=50).items
    return sorted(runs, key=lambda r: r.version)


def test_reliable_takes_a_zenml_step_and_hooks_by_reference() -> None:
    from reliability.errors import DefinitionError

    with pytest.raises(DefinitionError, match="module:attr"):
        reliable(load, hooks=CLEAN_FAILS_ONCE)  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="expects a ZenML @step"):
        reliable(_trace)
