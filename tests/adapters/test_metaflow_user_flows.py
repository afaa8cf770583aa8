"""``@reliable_step`` and ``@reliable`` on a team's own Metaflow flow (hand-written steps
and artifacts), run through ``metaflow.Runner`` with the local datastore and metadata in a
temporary directory. The flow computes the steps of ``host_pipelines.small`` with that
module's functions, so its outputs can be compared with our own runner's."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
from hosts import require_host

require_host("metaflow")

import host_pipelines as hp  # noqa: E402
from helpers import subprocess_env, wait_for  # noqa: E402
from ledger_checks import (  # noqa: E402
    assert_contract_stop,
    assert_kill_recovered,
    assert_retried_once,
    attempt_rows,
    only_run,
    outputs,
    runner_outputs,
    step_states,
)

pytestmark = [pytest.mark.metaflow, pytest.mark.integration, pytest.mark.timeout(600),
              pytest.mark.usefixtures("metaflow_user"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::ResourceWarning")]

HERE = Path(__file__).parent

HOOKS = """\
from reliability.chaos.faults import DataFault, ExceptionFault
from reliability.chaos.hook import ChaosHook

fault = [ChaosHook([ExceptionFault(step="transform", error="ConnectionError", attempts=[1])])]
empty_input = [ChaosHook([DataFault(step="transform", target="input", input="frame",
                                    corruption="empty")])]
"""

# A team's flow: its own steps and artifacts (frame, scaled, report, digest). {deco[...]}
# is where each variant puts @reliable_step; {flow_deco} where it puts @reliable.
FLOW = '''\
from types import SimpleNamespace

from metaflow import FlowSpec, JSONType, Parameter, current, retry, step

import host_pipelines as hp
from reliability.adapters.metaflow import reliable, reliable_step

OPTIONS = {options}


def ctx(name):
    return SimpleNamespace(step=name, attempt=current.retry_count + 1)


{flow_deco}
class ShopFlow(FlowSpec):
    run_params = Parameter("run_params", type=JSONType, default="{{}}")

    @step
    def start(self):
        self.params = hp.Params(**self.run_params)
        self.next(self.extract)

{deco[extract]}
    @retry(times=2, minutes_between_retries=0)
    @step
    def extract(self):
        self.frame = hp.extract(ctx("extract"), self.params)
        self.next(self.transform)

{deco[transform]}
    @retry(times=2, minutes_between_retries=0)
    @step
    def transform(self):
        self.scaled = hp.transform(ctx("transform"), self.params, self.frame)
        self.next(self.summary, self.fingerprint)

{deco[summary]}
    @retry(times=2, minutes_between_retries=0)
    @step
    def summary(self):
        self.report = hp.summary(self.scaled)
        self.next(self.join)

{deco[fingerprint]}
    @retry(times=2, minutes_between_retries=0)
    @step
    def fingerprint(self):
        self.digest = hp.fingerprint(self.frame)
        self.next(self.join)

    @step
    def join(self, inputs):
        self.merge_artifacts(inputs)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    ShopFlow()
'''

ARTIFACTS = {"extract": ([], "frame"), "transform": (["frame"], "scaled"),
             "summary": (["scaled"], "report"), "fingerprint": (["frame"], "digest")}


def _flow(tmp_path: Path, *, hooks: str | None = None, mutator: bool = False
          ) -> tuple[Path, dict[str, str]]:
    """The team's flow in ``tmp_path``, recording into pipeline ``small`` of home
    ``tmp_path/home``; the project's contracts (``tmp_path/contracts``) hold extract's."""
    hp.contract_dir(tmp_path)
    (tmp_path / "reliability.yaml").write_text("contracts: contracts\n")
    (tmp_path / "test_hooks.py").write_text(HOOKS)
    options = {"pipeline": "small", "home": str(tmp_path / "home"), "hooks": hooks}
    deco = {s: f"    @reliable_step(inputs={i!r}, output={o!r}, **OPTIONS)"
            for s, (i, o) in ARTIFACTS.items()}
    flow_deco = ""
    if mutator:  # every step from @reliable, but summary keeps its own @reliable_step,
        # which must win over the mutator's (wrong) output for it
        flow_deco = ("@reliable(steps=list(ARTIFACTS), **OPTIONS,\n"
                     "          inputs={s: i for s, (i, _) in ARTIFACTS.items()},\n"
                     "          outputs={**{s: o for s, (_, o) in ARTIFACTS.items()},\n"
                     "                   'summary': 'scaled'})")
        deco = {s: (d if s == "summary" else "") for s, d in deco.items()}
    source = FLOW.format(options=repr(options), flow_deco=flow_deco, deco=deco)
    flow_file = tmp_path / "shop_flow.py"
    flow_file.write_text(source.replace("\nOPTIONS = ", f"\nARTIFACTS = {ARTIFACTS!r}\n"
                                        "OPTIONS = ", 1))
    env = subprocess_env(USERNAME="tester", METAFLOW_DEFAULT_DATASTORE="local",
                         METAFLOW_DEFAULT_METADATA="local")
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(HERE), env["PYTHONPATH"]])
    return flow_file, env


def _run(flow_file: Path, env: dict[str, str], params: dict[str, Any]) -> Any:
    from metaflow import Runner

    with Runner(str(flow_file), show_output=False, env=env,
                cwd=str(flow_file.parent)) as runner:
        result = runner.run(run_params=params)
        return result.status, result.run, result.stdout + result.stderr


def test_fault_once_is_retried_by_metaflow_and_both_tries_are_recorded(
        tmp_path: Path) -> None:
    flow_file, env = _flow(tmp_path, hooks="test_hooks:fault")
    status, run, output = _run(flow_file, env, {})
    assert status == "successful", output[-4000:]
    assert run["transform"].task.current_attempt == 1  # Metaflow's @retry ran it again
    home = tmp_path / "home"
    run_id = assert_retried_once(home, "small", "transform")
    assert run_id == f"small-{run.id}"
    assert attempt_rows(home, run_id, "transform")[0]["error_type"] == "ConnectionError"
    assert step_states(home, run_id) == dict.fromkeys(ARTIFACTS, "succeeded")


def test_a_data_fault_replaces_the_artifact_the_step_reads(tmp_path: Path) -> None:
    from reliability import Ledger

    flow_file, env = _flow(tmp_path, hooks="test_hooks:empty_input")
    status, run, output = _run(flow_file, env, {})
    assert status == "successful", output[-4000:]
    assert len(run["extract"].task.data.frame) == 50  # what extract set
    assert len(run["transform"].task.data.scaled) == 0  # what transform got: no rows
    assert run["summary"].task.data.report["rows"] == 0
    home = tmp_path / "home"
    with Ledger(home / "ledger.db") as led:
        [fault] = led.events(only_run(home), "fault_injected")
    assert (fault["step"], fault["details"]["corruption"]) == ("transform", "empty")


def test_contract_violation_is_not_retried_and_later_steps_do_not_run(
        tmp_path: Path) -> None:
    flow_file, env = _flow(tmp_path)
    status, run, output = _run(flow_file, env, {"bad": True})
    assert status == "failed"
    assert "This failed task will not be retried" in output  # @retry(times=2), yet once
    assert "contract" in output.lower()
    assert [t.current_attempt for t in run["extract"]] == [0]
    assert {s.id for s in run} == {"start", "extract"}  # nothing after extract ran
    home = tmp_path / "home"
    run_id = only_run(home)
    assert run_id == f"small-{run.id}"
    assert_contract_stop(home, run_id)  # ledger, quarantine and runbook say what broke


def test_sigkill_of_a_task_process_is_recorded_lost_and_retried(tmp_path: Path) -> None:
    flow_file, env = _flow(tmp_path)
    signals = tmp_path / "signals"
    signals.mkdir()
    params = {"hold": "transform", "signal_dir": str(signals)}
    done: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: done.update(out=_run(flow_file, env, params)))
    thread.start()
    marker = signals / "transform.running"
    try:
        wait_for(lambda: marker.exists() or not thread.is_alive(), timeout=300,
                 what="transform's first try")
        victim = int(marker.read_text())
        assert victim != os.getpid()
        os.kill(victim, signal.SIGKILL)
    finally:
        if not marker.exists():
            (signals / "release").write_text("")
        thread.join(timeout=300)
    (signals / "release").write_text("")  # our runner's run below must not hold
    status, run, output = done["out"]
    assert status == "successful", output[-4000:]
    assert run["transform"].task.current_attempt == 1
    run_id = assert_kill_recovered(tmp_path / "home", "transform", victim,
                                   tmp_path / "ours", params)
    assert run_id == f"small-{run.id}"


def test_flow_mutator_records_every_step_with_our_runners_digests(tmp_path: Path) -> None:
    """``@reliable`` on the class decorates every step; a step's own ``@reliable_step``
    (summary's) wins: its recorded output is ``report``, not the mutator's ``scaled``."""
    from reliability.runner.store import encode

    flow_file, env = _flow(tmp_path, mutator=True)
    status, run, output = _run(flow_file, env, {"rows": 40})
    assert status == "successful", output[-4000:]
    home = tmp_path / "home"
    run_id = only_run(home)
    assert run_id == f"small-{run.id}"
    recorded = outputs(home, run_id)
    # the same steps run by our own runner commit the same bytes
    assert recorded == runner_outputs(hp.small, tmp_path / "ours", {"rows": 40})
    # and each digest is that of the artifact Metaflow stored for the step
    for step, (_, artifact) in ARTIFACTS.items():
        value = getattr(run[step].task.data, artifact)
        digest, _, _ = encode(value, tmp_path / f"{step}.check")
        assert digest == recorded[step] == hashlib.sha256(
            (tmp_path / f"{step}.check").read_bytes()).hexdigest(), step


def test_a_mistake_in_the_decorator_is_a_clear_error_and_not_retried(tmp_path: Path) -> None:
    flow_file = tmp_path / "typo_flow.py"
    flow_file.write_text(
        "from metaflow import FlowSpec, retry, step\n"
        "from reliability.adapters.metaflow import reliable_step\n\n\n"
        "class TypoFlow(FlowSpec):\n"
        "    @step\n"
        "    def start(self):\n"
        "        self.raw = [1, 2]\n"
        "        self.next(self.total)\n\n"
        f"    @reliable_step(inputs=['rows'], output='sum', home={str(tmp_path / 'home')!r})\n"
        "    @retry(times=2, minutes_between_retries=0)\n"
        "    @step\n"
        "    def total(self):\n"
        "        self.sum = sum(self.raw)\n"
        "        self.next(self.end)\n\n"
        "    @step\n"
        "    def end(self):\n"
        "        pass\n\n\n"
        "if __name__ == '__main__':\n"
        "    TypoFlow()\n")
    env = subprocess_env(USERNAME="tester", METAFLOW_DEFAULT_DATASTORE="local",
                         METAFLOW_DEFAULT_METADATA="local")
    from metaflow import Runner

    with Runner(str(flow_file), show_output=False, env=env, cwd=str(tmp_path)) as runner:
        result = runner.run()
        status, run, output = result.status, result.run, result.stdout + result.stderr
    assert status == "failed"
    assert "input artifact 'rows' does not exist" in output and "Fix:" in output
    assert "This failed task will not be retried" in output
    assert [t.current_attempt for t in run["total"]] == [0]


def test_options_reliable_step_does_not_know_are_a_clear_error() -> None:
    from reliability.adapters.metaflow import _StepOptions
    from reliability.errors import DefinitionError

    with pytest.raises(DefinitionError, match=r"unknown option\(s\) \['ouput'\].*Fix"):
        _StepOptions.of("ShopFlow", "extract", {"ouput": "frame"})
    with pytest.raises(DefinitionError, match=r"'frame\.x' is not an artifact name.*Fix"):
        _StepOptions.of("ShopFlow", "extract", {"output": "frame.x"})
    opts = _StepOptions.of("ShopFlow", "extract", {"inputs": "raw", "output": "frame"})
    assert (opts.pipeline, opts.inputs, opts.output) == ("ShopFlow", ("raw",), "frame")
