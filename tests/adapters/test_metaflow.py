"""The Metaflow adapter against real Metaflow: generated flow files run through the
``metaflow.Runner`` API with the local datastore and metadata in a temporary directory."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
from hosts import require_host

require_host("metaflow")

import host_pipelines as hp  # noqa: E402
from helpers import ROOT, subprocess_env, wait_for  # noqa: E402
from ledger_checks import (  # noqa: E402
    assert_contract_stop,
    assert_kill_recovered,
    assert_retried_once,
    attempt_rows,
    only_run,
    outputs,
    runner_outputs,
)

pytestmark = [pytest.mark.metaflow, pytest.mark.integration, pytest.mark.timeout(600),
              pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::ResourceWarning")]

HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def metaflow_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Metaflow's client needs a user name; its local datastore lives under the cwd."""
    monkeypatch.setenv("USERNAME", "tester")
    monkeypatch.chdir(tmp_path)

HOOKS = """\
import host_pipelines as hp
from pathlib import Path
from reliability.chaos.faults import ExceptionFault
from reliability.chaos.hook import ChaosHook
from reliability.contracts import ContractHook, load_contracts

fault = [ChaosHook([ExceptionFault(step="transform", error="ConnectionError", attempts=[1])])]
contract = [ContractHook(load_contracts(Path({contracts!r}), hp.small))]
"""


def _flow(tmp_path: Path, pipeline: str = "host_pipelines:small", hooks: str | None = None
          ) -> tuple[Path, dict[str, str]]:
    from reliability.adapters.metaflow import flow_source

    (tmp_path / "test_hooks.py").write_text(HOOKS.format(
        contracts=str(hp.contract_dir(tmp_path))))
    flow_file = tmp_path / "small_flow.py"
    flow_file.write_text(flow_source(pipeline, home=tmp_path / "home", hooks=hooks,
                                     contracts=False))
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


def test_exception_fault_once_is_retried_by_metaflow_and_recorded(tmp_path: Path) -> None:
    flow_file, env = _flow(tmp_path, hooks="test_hooks:fault")
    status, run, _ = _run(flow_file, env, {})
    assert status == "successful", status
    assert run["transform"].task.current_attempt == 1  # Metaflow's @retry ran it again
    home = tmp_path / "home"
    run_id = assert_retried_once(home, "small", "transform")
    assert run_id == f"small-{run.id}"
    assert attempt_rows(home, run_id, "transform")[0]["error_type"] == "ConnectionError"
    refs = {s: r["digest"] for s, r in run.data.refs.items()}
    assert refs == runner_outputs(hp.small, tmp_path / "ours", {}) == outputs(home, run_id)


def test_contract_violation_is_not_retried_and_skips_downstream(tmp_path: Path) -> None:
    flow_file, env = _flow(tmp_path, hooks="test_hooks:contract")
    status, run, output = _run(flow_file, env, {"bad": True})
    assert status == "failed"
    assert "This failed task will not be retried" in output  # @retry(times=2), yet once
    assert [t.current_attempt for t in run["extract"]] == [0]
    assert {s.id for s in run} == {"start", "extract"}  # downstream never ran
    home = tmp_path / "home"
    run_id = only_run(home)
    assert_contract_stop(home, run_id)


def test_sigkill_of_a_task_process_is_recorded_and_retried(tmp_path: Path) -> None:
    flow_file, env = _flow(tmp_path)
    signals = tmp_path / "signals"
    signals.mkdir()
    params = {"hold": "transform", "signal_dir": str(signals)}
    done: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: done.update(out=_run(flow_file, env, params)))
    thread.start()
    try:
        marker = signals / "transform.running"
        wait_for(lambda: marker.exists() or not thread.is_alive(), timeout=300,
                 what="transform's first attempt")
        victim = int(marker.read_text())
        assert victim != os.getpid()
        os.kill(victim, signal.SIGKILL)
    finally:
        if not marker.exists():
            (signals / "release").write_text("")
        thread.join(timeout=300)
    (signals / "release").write_text("")  # our runner's run below must not hold
    status, run, _ = done["out"]
    assert status == "successful"
    assert run["transform"].task.current_attempt == 1
    run_id = assert_kill_recovered(tmp_path / "home", "transform", victim,
                                   tmp_path / "ours", params)
    assert run_id == f"small-{run.id}"


def test_reference_pipeline_outputs_equal_our_runners(tmp_path: Path) -> None:
    from pipelines.reference import pipeline

    flow_file, env = _flow(tmp_path, pipeline="pipelines.reference:pipeline")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env["PYTHONPATH"]])
    status, run, output = _run(flow_file, env, {"seed": 5})
    assert status == "successful", output[-4000:]
    refs = {s: r["digest"] for s, r in run.data.refs.items()}
    assert refs == runner_outputs(pipeline, tmp_path / "ours", {"seed": 5})
    assert set(refs) == set(pipeline.steps)


def test_step_names_metaflow_cannot_take_are_a_clear_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from reliability.adapters.metaflow import flow_source
    from reliability.errors import DefinitionError

    (tmp_path / "odd_names.py").write_text(
        "from reliability import Pipeline\npipe = Pipeline('odd')\n"
        "pipe.add(lambda: 1, name='end', inputs={})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(DefinitionError, match=r"'end'.*Fix: rename"):
        flow_source("odd_names:pipe")
