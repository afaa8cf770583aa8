"""The ZenML adapter against real ZenML: pipelines on the default local stack, ZenML's
configuration and SQLite store in a temporary directory."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hosts import require_host

require_host("zenml")

import host_pipelines as hp  # noqa: E402
from helpers import wait_for  # noqa: E402
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

pytestmark = [pytest.mark.zenml, pytest.mark.integration, pytest.mark.timeout(600),
              pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]


_CONFIG_PATH: list[Path] = []


@pytest.fixture(scope="session", autouse=True)
def zenml_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """ZenML's global configuration and local store under a temporary directory, one for
    the session (ZenML reads its configuration once per process; every module using this
    fixture gets the same directory)."""
    if not _CONFIG_PATH:
        _CONFIG_PATH.append(tmp_path_factory.mktemp("zenml_config"))
    settings = {"ZENML_CONFIG_PATH": str(_CONFIG_PATH[0]),
                "ZENML_ANALYTICS_OPT_IN": "false", "ZENML_LOGGING_VERBOSITY": "WARN",
                "ZENML_ENABLE_RICH_TRACEBACK": "false"}
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _pipeline(home: Path, target: Any = None, **options: Any) -> Any:
    from reliability.adapters.zenml import to_pipeline

    options.setdefault("contracts", False)
    return to_pipeline(target or hp.small, home=home, **options)


def test_exception_fault_once_is_retried_by_zenml_and_recorded(tmp_path: Path) -> None:
    home = tmp_path / "home"
    chaos = ChaosHook([ExceptionFault(step="transform", error="ConnectionError",
                                      attempts=[1])])
    run = _pipeline(home, hooks=[chaos])(params={})
    assert str(run.status.value) == "completed"
    run_id = assert_retried_once(home, "small", "transform")
    assert run_id == f"small-{run.id}"
    rows = attempt_rows(home, run_id, "transform")
    assert rows[0]["error_type"] == "ConnectionError"
    # the documented limitation: ZenML's local orchestrator runs steps in its own process
    assert {a["worker_pid"] for a in rows} == {os.getpid()}
    refs = {s: run.steps[s].outputs["output"][0].load()["digest"] for s in run.steps}
    assert refs == runner_outputs(hp.small, tmp_path / "ours", {}) == outputs(home, run_id)


def test_contract_violation_is_not_retried_and_skips_downstream(tmp_path: Path) -> None:
    home = tmp_path / "home"
    contracts = load_contracts(hp.contract_dir(tmp_path), hp.small)
    with pytest.raises(RuntimeError, match="failure in step"):
        _pipeline(home, hooks=[ContractHook(contracts)])(params={"bad": True})
    run_id = only_run(home)
    assert_contract_stop(home, run_id)  # ZenML retried extract twice: refused, not run
    for step in ("transform", "summary", "fingerprint"):
        assert attempt_rows(home, run_id, step) == []


def test_sigkill_of_an_isolated_step_is_recorded_and_retried(tmp_path: Path) -> None:
    signals = tmp_path / "signals"
    signals.mkdir()
    params = {"hold": "transform", "signal_dir": str(signals)}
    pipe = _pipeline(tmp_path / "home", isolate=True)
    done: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: done.update(run=pipe(params=params)))
    thread.start()
    marker = signals / "transform.running"
    try:
        wait_for(lambda: marker.exists() or not thread.is_alive(), timeout=300,
                 what="transform's first attempt")
        victim = int(marker.read_text())
        assert victim != os.getpid()  # our supervised worker, not ZenML's process
        os.kill(victim, signal.SIGKILL)
    finally:
        if not marker.exists():
            (signals / "release").write_text("")
        thread.join(timeout=300)
    assert str(done["run"].status.value) == "completed"
    assert_kill_recovered(tmp_path / "home", "transform", victim, tmp_path / "ours", params)


def test_reference_pipeline_outputs_equal_our_runners(tmp_path: Path) -> None:
    from pipelines.reference import pipeline

    home = tmp_path / "home"
    _pipeline(home, pipeline)(params={"seed": 5})
    ours = runner_outputs(pipeline, tmp_path / "ours", {"seed": 5})
    assert outputs(home, only_run(home)) == ours
    assert set(ours) == set(pipeline.steps)


STEP_PROCESS = """\
import sys

from zenml.client import Client
from zenml.entrypoints.step_entrypoint_configuration import StepEntrypointConfiguration

snapshot, step, run = sys.argv[1:]
# what an orchestrator that starts a process per step knows from its environment
Client().active_stack.orchestrator._orchestrator_run_id = run
args = StepEntrypointConfiguration.get_entrypoint_arguments(step_name=step,
                                                            snapshot_id=snapshot)
StepEntrypointConfiguration(arguments=args[2:]).run()  # past --entrypoint_config_source
"""


def run_in_step_processes(pipe: Any, steps: list[str], tmp_path: Path) -> list[int]:
    """Run ``pipe``'s ``steps`` in order through ZenML's own step entrypoint, each in a new
    process (as orchestrators that start a process or container per step run them), as one
    ZenML run of a snapshot built here. Returns the processes' pids."""
    import subprocess
    import sys

    snapshot = pipe.create_snapshot(name=f"step-processes-{tmp_path.name}")
    script = tmp_path / "step_process.py"
    script.write_text(STEP_PROCESS)
    here = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(here), str(here.parent), *filter(None, [os.environ.get("PYTHONPATH")])])}
    pids = []
    for step in steps:
        proc = subprocess.Popen([sys.executable, str(script), str(snapshot.id), step,
                                 f"step-processes-{tmp_path.name}"], env=env, text=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        pids.append(proc.pid)
    return pids


def test_each_step_in_a_fresh_process_rebuilds_its_bridge(tmp_path: Path) -> None:
    """The step rebuilds its bridge from the pipeline's reference and options in a process
    where the pipeline was never built."""
    home = tmp_path / "home"
    pipe = _pipeline(home, "host_pipelines:small").with_options(parameters={"params": {}})
    order = ["extract", "transform"]  # a step and one reading its output (each process
    pids = run_in_step_processes(pipe, order, tmp_path)  # imports ZenML: ~15-25 s)
    run_id = only_run(home)
    assert {s: [a["worker_pid"] for a in attempt_rows(home, run_id, s)] for s in order} == {
        s: [pid] for s, pid in zip(order, pids, strict=True)}  # each in its own process
    ours = runner_outputs(hp.small, tmp_path / "ours", {})
    assert outputs(home, run_id) == {s: ours[s] for s in order}


def test_a_step_elsewhere_without_a_reference_or_with_hook_objects_is_a_clear_error() -> None:
    from reliability.adapters.zenml import bridge_for
    from reliability.errors import DefinitionError

    with pytest.raises(DefinitionError, match="no 'module:attr' reference"):
        bridge_for("small#999", None, {})
    with pytest.raises(DefinitionError, match="hooks='module:attr'"):
        bridge_for("small#998", "host_pipelines:small", {"hook_objects": True})


def test_a_pipeline_object_travels_as_its_module_reference() -> None:
    from reliability import Pipeline
    from reliability.adapters.zenml import pipeline_reference

    assert pipeline_reference(hp.small) == "host_pipelines:small"
    local = Pipeline("local")

    @local.step()
    def only() -> int:
        return 1

    assert pipeline_reference(local) is None  # not importable elsewhere: in-process only
