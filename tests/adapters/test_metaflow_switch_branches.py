"""A Metaflow flow with a conditional branch (``self.next({...}, condition=...)``): the
decorated step on the branch the run did not take is recorded ``skipped`` with its reason,
and the run settles in our ledger -- ``succeeded`` when what ran succeeded, ``failed``
(downstream ``upstream_failed``) when the taken branch failed. Which steps carry
``@reliable_step`` (through ``@reliable(steps=...)``) decides which task learns of the
branch: a step on the taken branch, a step after the branches meet, or the switch itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hosts import require_host

require_host("metaflow")

from helpers import subprocess_env  # noqa: E402
from ledger_checks import (  # noqa: E402
    attempt_rows,
    only_run,
    outputs,
    run_status,
    step_states,
)

pytestmark = [pytest.mark.metaflow, pytest.mark.integration, pytest.mark.timeout(600),
              pytest.mark.usefixtures("metaflow_user"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::ResourceWarning")]

FLOW = '''\
import os

from metaflow import FlowSpec, JSONType, Parameter, step

from reliability.adapters.metaflow import reliable


@reliable(pipeline="routes", home={home!r}, steps={steps!r},
          outputs={{"light": "total", "heavy": "total", "report": "summary"}})
class RouteFlow(FlowSpec):
    run_params = Parameter("run_params", type=JSONType, default="{{}}")

    @step
    def start(self):
        self.rows = list(range(int(self.run_params.get("rows", 10))))
        self.next(self.route)

    @step
    def route(self):
        self.size = self.run_params.get("size", "small")
        self.next({{"small": self.light, "big": self.heavy}}, condition="size")

    @step
    def light(self):
        if os.path.exists(self.run_params.get("fail") or "-"):  # a test's flag file
            raise ValueError("light broke")
        self.total = sum(self.rows)
        self.next(self.report)

    @step
    def heavy(self):
        self.total = sum(x * x for x in self.rows)
        self.next(self.report)

    @step
    def report(self):
        self.summary = {{"total": self.total}}
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    RouteFlow()
'''

NOT_TAKEN = "branch not taken (step 'route' went to 'light' on condition size="


def _run(tmp_path: Path, steps: list[str], params: dict[str, Any] | None
         ) -> tuple[str, Any, str]:
    """Run the flow with ``params``, or (``None``) resume its last run."""
    from metaflow import Runner

    flow_file = tmp_path / "route_flow.py"
    flow_file.write_text(FLOW.format(home=str(tmp_path / "home"), steps=steps))
    env = subprocess_env(USERNAME="tester", METAFLOW_DEFAULT_DATASTORE="local",
                         METAFLOW_DEFAULT_METADATA="local")
    with Runner(str(flow_file), show_output=False, env=env, cwd=str(tmp_path)) as runner:
        result = runner.run(run_params=params) if params is not None else runner.resume()
        return result.status, result.run, result.stdout + result.stderr


def _skipped_reason(home: Path, run_id: str, step: str) -> str:
    from reliability import Ledger

    with Ledger(home / "ledger.db") as led:
        [row] = [s for s in led.steps(run_id) if s["step"] == step]
        [event] = [e for e in led.events(run_id, "step_skipped") if e["step"] == step]
    assert event["details"]["reason"] == row["error"]
    return str(row["error"])


def test_the_step_on_the_branch_not_taken_is_skipped_and_the_run_succeeds(
        tmp_path: Path) -> None:
    """Both branches and the steps around them decorated: the taken branch's step tells."""
    status, run, output = _run(tmp_path, ["start", "light", "heavy", "report"],
                               {"size": "small"})
    assert status == "successful", output[-4000:]
    assert {s.id for s in run} == {"start", "route", "light", "report", "end"}
    home = tmp_path / "home"
    run_id = only_run(home)
    assert run_id == f"routes-{run.id}"
    assert step_states(home, run_id) == {"start": "succeeded", "light": "succeeded",
                                         "heavy": "skipped", "report": "succeeded"}
    assert attempt_rows(home, run_id, "heavy") == []  # it never ran
    assert _skipped_reason(home, run_id, "heavy") == NOT_TAKEN + "'small')"
    assert run_status(home, run_id) == "succeeded"
    # what `reliability runs show` prints: the step, its status and why
    env = {**os.environ, "COLUMNS": "250"}
    shown = subprocess.run([sys.executable, "-m", "reliability", "runs", "show", run_id,
                            "--home", str(home)], capture_output=True, text=True,
                           env=env, check=True).stdout
    [line] = [ln for ln in shown.splitlines() if ln.lstrip("│┃ ").startswith("heavy ")
              and "step_skipped" not in ln]  # its row of the steps table
    assert "skipped" in line and "branch not taken" in line, shown
    doc = json.loads(subprocess.run(
        [sys.executable, "-m", "reliability", "runs", "show", run_id, "--home", str(home),
         "--json"], capture_output=True, text=True, env=env, check=True).stdout)
    assert doc["run"]["status"] == "succeeded"


def test_a_step_after_the_branches_meet_settles_the_branch_not_taken(
        tmp_path: Path) -> None:
    """Only the untaken branch's step and the step after the branches meet decorated."""
    status, run, output = _run(tmp_path, ["start", "heavy", "report"], {"size": "small"})
    assert status == "successful", output[-4000:]
    assert "heavy" not in {s.id for s in run}
    home = tmp_path / "home"
    run_id = only_run(home)
    assert step_states(home, run_id) == {"start": "succeeded", "heavy": "skipped",
                                         "report": "succeeded"}
    assert _skipped_reason(home, run_id, "heavy") == NOT_TAKEN + "'small')"
    assert run_status(home, run_id) == "succeeded"


def test_a_decorated_switch_step_settles_the_branch_it_did_not_take(tmp_path: Path) -> None:
    """The switch step and the untaken branch's step decorated, nothing after them."""
    status, run, output = _run(tmp_path, ["route", "heavy"], {"size": "small"})
    assert status == "successful", output[-4000:]
    assert "heavy" not in {s.id for s in run}
    home = tmp_path / "home"
    run_id = only_run(home)
    assert step_states(home, run_id) == {"route": "succeeded", "heavy": "skipped"}
    assert _skipped_reason(home, run_id, "heavy") == NOT_TAKEN + "'small')"
    assert run_status(home, run_id) == "succeeded"


def test_a_failure_in_the_taken_branch_fails_the_run_and_stops_what_follows(
        tmp_path: Path) -> None:
    flag = tmp_path / "light.fails"
    flag.write_text("")
    status, run, output = _run(tmp_path, ["start", "light", "heavy", "report"],
                               {"size": "small", "fail": str(flag)})
    assert status == "failed"
    assert "light broke" in output
    assert {s.id for s in run} == {"start", "route", "light"}
    home = tmp_path / "home"
    run_id = only_run(home)
    assert step_states(home, run_id) == {"start": "succeeded", "light": "failed",
                                         "heavy": "skipped", "report": "upstream_failed"}
    assert _skipped_reason(home, run_id, "heavy") == NOT_TAKEN + "'small')"
    assert [a["status"] for a in attempt_rows(home, run_id, "light")] == ["failed"]
    assert run_status(home, run_id) == "failed"

    # Metaflow's resume copies start and route, runs light and what follows again: the
    # new run records start from the run it resumes, skips heavy again and settles
    flag.unlink()
    status, again, output = _run(tmp_path, ["start", "light", "heavy", "report"], None)
    assert status == "successful", output[-4000:]
    assert {s.id for s in again} == {"start", "route", "light", "report", "end"}
    resumed = f"routes-{again.id}"
    assert step_states(home, resumed) == {"start": "succeeded", "light": "succeeded",
                                          "heavy": "skipped", "report": "succeeded"}
    assert attempt_rows(home, resumed, "start") == []  # copied by Metaflow, not run
    assert outputs(home, resumed)["start"] == outputs(home, run_id)["start"]
    assert _skipped_reason(home, resumed, "heavy") == NOT_TAKEN + "'small')"
    assert run_status(home, resumed) == "succeeded"
    assert run_status(home, run_id) == "failed"


SWITCH = 'self.next({{"{0}": self.{1}, "{2}": self.{3}}}, condition="{4}")'
SHAPES = {  # flow -> step -> its transition (a join's step takes inputs)
    "Nested": {"start": "self.next(self.s1)", "s1": SWITCH.format("x", "a", "y", "b", "mode"),
               "a": SWITCH.format("p", "a1", "q", "a2", "kind"), "a1": "self.next(self.am)",
               "a2": "self.next(self.am)", "am": "self.next(self.m)",
               "b": "self.next(self.m)", "m": "self.next(self.end)", "end": "pass"},
    "Loop": {"start": "self.next(self.again)",
             "again": SWITCH.format("more", "again", "done", "after", "state"),
             "after": "self.next(self.end)", "end": "pass"},
    "InSplit": {"start": "self.next(self.p1, self.p2)",
                "p1": SWITCH.format("x", "a", "y", "b", "mode"), "a": "self.next(self.m)",
                "b": "self.next(self.m)", "m": "self.next(self.join)",
                "p2": "self.next(self.join)", "join": "self.next(self.end)", "end": "pass"},
}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import importlib.util

    lines = ["from metaflow import FlowSpec, step"]
    for flow, steps in SHAPES.items():
        lines += ["", "", f"class {flow}(FlowSpec):"]
        for name, body in steps.items():
            lines += ["    @step", f"    def {name}(self{', inputs' if name == 'join' else ''}):",
                      f"        {body}", ""]
    path = tmp_path_factory.mktemp("shapes") / "flow_shapes.py"
    path.write_text("\n".join(lines))
    spec = importlib.util.spec_from_file_location("flow_shapes", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _seen_from(shapes: Any, flow: str, here: str, chosen: str | None = None,
               **artifacts: Any) -> dict[str, str]:
    """What the task of ``here`` records skipped among every step of ``flow``."""
    from types import SimpleNamespace

    from metaflow.graph import FlowGraph

    from reliability.adapters.metaflow import _way_here

    graph = FlowGraph(getattr(shapes, flow))
    task = SimpleNamespace(_graph=graph, **artifacts)
    return _way_here(task, here, chosen)[1]


def test_nested_switches_skip_the_branches_each_did_not_take(shapes: Any) -> None:
    # on the taken branches: their position in the graph tells
    assert _seen_from(shapes, "Nested", "a1", mode="x", kind="p") == {
        "b": "branch not taken (step 's1' went to 'a' on condition mode='x')",
        "a2": "branch not taken (step 'a' went to 'a1' on condition kind='p')"}
    # after both met: the condition artifacts tell
    assert set(_seen_from(shapes, "Nested", "m", mode="x", kind="q")) == {"b", "a1"}
    assert set(_seen_from(shapes, "Nested", "m", mode="y")) == {"a", "a1", "a2", "am"}
    # the switches themselves, from where self.next went
    assert set(_seen_from(shapes, "Nested", "s1", chosen="b", mode="y")) == {
        "a", "a1", "a2", "am"}
    assert set(_seen_from(shapes, "Nested", "a", chosen="a2", kind="q")) == {"a1", "b"}
    # before any switch decided, and where nothing says how it went: nothing
    assert _seen_from(shapes, "Nested", "start") == {}
    assert _seen_from(shapes, "Nested", "m") == {}  # no condition artifact to read
    assert _seen_from(shapes, "Nested", "m", mode="z") == {}  # not one of its cases


def test_a_loop_skips_nothing(shapes: Any) -> None:
    assert _seen_from(shapes, "Loop", "again", chosen="again", state="more") == {}
    assert _seen_from(shapes, "Loop", "again", chosen="after", state="done") == {}
    assert _seen_from(shapes, "Loop", "after", state="done") == {}


def test_a_switch_in_one_branch_of_a_split_leaves_the_other_branch(shapes: Any) -> None:
    assert set(_seen_from(shapes, "InSplit", "a", mode="x")) == {"b"}
    assert set(_seen_from(shapes, "InSplit", "join", mode="y")) == {"a"}
    assert _seen_from(shapes, "InSplit", "p2", mode="x") == {}
