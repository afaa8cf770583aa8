"""A host run with a step on a branch the host did not take (recorded ``skipped`` through
:meth:`StepBridge.skip_steps`), resumed by our runner: the skipped step does not run, a
step reading its output is skipped too, the step that failed runs again and the run
succeeds. Real ledger, store and worker processes; no orchestrator needed."""

from __future__ import annotations

from pathlib import Path

import pytest
from ledger_checks import attempt_rows, run_status, step_states
from pydantic import BaseModel

from reliability import Ledger, Pipeline, Retry, Runner, StepContext
from reliability.adapters import AttemptNotRetryable, HostAttempt, StepBridge, host_run_id


class RouteParams(BaseModel):
    marks: str  # a directory: the steps that ran leave a file; "fail-report" fails report


routes = Pipeline("routes", params=RouteParams)


def _ran(ctx: StepContext, params: RouteParams) -> None:
    (Path(params.marks) / f"{ctx.step}.{ctx.attempt}").write_text("")


@routes.step
def start(ctx: StepContext, params: RouteParams) -> list[int]:
    _ran(ctx, params)
    return list(range(10))


@routes.step
def light(ctx: StepContext, params: RouteParams, start: list[int]) -> int:
    _ran(ctx, params)
    return sum(start)


@routes.step
def heavy(ctx: StepContext, params: RouteParams, start: list[int]) -> int:
    _ran(ctx, params)
    return sum(x * x for x in start)


@routes.step
def heavy_report(ctx: StepContext, params: RouteParams, heavy: int) -> str:
    _ran(ctx, params)
    return f"heavy {heavy}"


@routes.step(after=["heavy"], retry=Retry(attempts=1))
def report(ctx: StepContext, params: RouteParams, light: int) -> str:
    _ran(ctx, params)
    if (Path(params.marks) / "fail-report").exists():
        raise ValueError("report broke")
    return f"light {light}"


NOT_TAKEN = "branch not taken (step 'route' went to 'light' on condition size='small')"


def test_resume_runs_what_failed_and_leaves_the_branch_not_taken(tmp_path: Path) -> None:
    home, marks = tmp_path / "home", tmp_path / "marks"
    marks.mkdir()
    (marks / "fail-report").write_text("")
    params = {"marks": str(marks)}
    bridge = StepBridge(routes, home=home, contracts=False, sla=False)

    def attempt(step: str) -> HostAttempt:
        return HostAttempt(host_run_id="7", step=step, attempt=1, retries_left=False,
                           params=params)

    # the host's run: start and light ran, heavy (and the step after it) were on the
    # branch not taken, report failed
    first = bridge.run_step(attempt("start"), {})
    lit = bridge.run_step(attempt("light"), {"start": first})
    bridge.skip_steps("7", {"heavy": NOT_TAKEN})
    with pytest.raises(AttemptNotRetryable, match="report broke"):
        bridge.run_step(attempt("report"), {"light": lit})
    bridge.close()
    run_id = host_run_id("routes", "7")
    assert step_states(home, run_id) == {"start": "succeeded", "light": "succeeded",
                                         "heavy": "skipped", "heavy_report": "pending",
                                         "report": "failed"}
    assert run_status(home, run_id) == "running"  # heavy_report never ended

    (marks / "fail-report").unlink()
    runner = Runner(routes, home=home, workers=2)
    try:
        result = runner.resume(run_id)
    finally:
        runner.close()
        runner.ledger.close()
    assert result.status == "succeeded", result.failed
    assert sorted(p.name for p in marks.iterdir()) == ["light.1", "report.1", "report.2",
                                                        "start.1"]  # heavy never ran
    assert step_states(home, run_id) == {"start": "succeeded", "light": "succeeded",
                                         "heavy": "skipped", "heavy_report": "skipped",
                                         "report": "succeeded"}
    assert [a["status"] for a in attempt_rows(home, run_id, "report")] == ["failed",
                                                                          "succeeded"]
    with Ledger(home / "ledger.db") as led:
        why = {s["step"]: s["error"] for s in led.steps(run_id)}
        skipped = {e["step"]: e["details"]["reason"]
                   for e in led.events(run_id, "step_skipped") if e["step"] != "start"
                   and e["details"]["reason"] != "already committed"}
    assert why["heavy"] == NOT_TAKEN
    assert why["heavy_report"] == "its input step 'heavy' was skipped"
    assert skipped == {"heavy": NOT_TAKEN, "heavy_report": why["heavy_report"]}
