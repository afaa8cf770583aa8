"""The KFP adapter against real Kubeflow Pipelines v2: pipelines compiled to YAML, and run
by KFP's local runner (``kfp.local.SubprocessRunner``: each task a subprocess, no Docker)."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from hosts import require_host

require_host("kfp")

import host_pipelines as hp  # noqa: E402
from helpers import ROOT, wait_for  # noqa: E402
from ledger_checks import (  # noqa: E402
    assert_contract_stop,
    assert_kill_recovered,
    assert_retried_once,
    attempt_rows,
    only_run,
    outputs,
    runner_outputs,
)

pytestmark = [pytest.mark.kfp, pytest.mark.integration, pytest.mark.timeout(600),
              pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore:The default base_image:FutureWarning")]

HERE = Path(__file__).parent

HOOKS = """\
import host_pipelines as hp
from pathlib import Path
from reliability.chaos.faults import ExceptionFault
from reliability.chaos.hook import ChaosHook
from reliability.contracts import ContractHook, load_contracts

fault = [ChaosHook([ExceptionFault(step="transform", error="ConnectionError", attempts=[1])])]
contract = [ContractHook(load_contracts(Path({contracts!r}), hp.small))]
"""


@pytest.fixture
def local_kfp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """KFP's local runner in this venv (no per-task installs), task outputs under tmp;
    task processes import the test pipelines and hooks through PYTHONPATH."""
    import kfp.local

    (tmp_path / "test_hooks.py").write_text(HOOKS.format(
        contracts=str(hp.contract_dir(tmp_path))))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(tmp_path), str(HERE), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.syspath_prepend(str(tmp_path))
    kfp.local.init(runner=kfp.local.SubprocessRunner(use_venv=False),
                   pipeline_root=str(tmp_path / "kfp_outputs"), raise_on_error=True)
    return tmp_path / "home"


def _pipeline(home: Path, target: str = "host_pipelines:small", **options: Any) -> Any:
    from reliability.adapters.kfp import to_pipeline

    options.setdefault("contracts", False)
    return to_pipeline(target, home=home, install_kfp_package=False, **options)


def test_exception_fault_once_is_retried_by_kfp_and_recorded(local_kfp: Path,
                                                             tmp_path: Path) -> None:
    home = local_kfp
    _pipeline(home, hooks="test_hooks:fault")(params="{}")
    run_id = assert_retried_once(home, "small", "transform")
    assert attempt_rows(home, run_id, "transform")[0]["error_type"] == "ConnectionError"
    assert outputs(home, run_id) == runner_outputs(hp.small, tmp_path / "ours", {})


def test_contract_violation_is_not_retried_and_skips_downstream(local_kfp: Path) -> None:
    home = local_kfp
    with pytest.raises(RuntimeError, match="FAILURE"):
        _pipeline(home, hooks="test_hooks:contract")(params='{"bad": true}')
    run_id = only_run(home)
    assert_contract_stop(home, run_id)  # KFP re-launched extract twice: refused, not run
    for step in ("transform", "summary", "fingerprint"):
        assert attempt_rows(home, run_id, step) == []


def test_sigkill_of_a_task_process_is_recorded_and_retried(local_kfp: Path,
                                                           tmp_path: Path) -> None:
    import json

    signals = tmp_path / "signals"
    signals.mkdir()
    params = {"hold": "transform", "signal_dir": str(signals)}
    pipe = _pipeline(local_kfp)
    failed: list[BaseException] = []

    def run() -> None:
        try:
            pipe(params=json.dumps(params))
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    marker = signals / "transform.running"
    try:
        wait_for(lambda: marker.exists() or not thread.is_alive(), timeout=300,
                 what="transform's first attempt")
        victim = int(marker.read_text())
        assert victim != os.getpid()  # the task's own process
        os.kill(victim, signal.SIGKILL)
    finally:
        if not marker.exists():
            (signals / "release").write_text("")
        thread.join(timeout=300)
    assert not failed, failed
    assert_kill_recovered(local_kfp, "transform", victim, tmp_path / "ours", params)


def test_reference_pipeline_outputs_equal_our_runners(local_kfp: Path, tmp_path: Path) -> None:
    from pipelines.reference import pipeline

    _pipeline(local_kfp, "pipelines.reference:pipeline")(params='{"seed": 5}')
    ours = runner_outputs(pipeline, tmp_path / "ours", {"seed": 5})
    assert outputs(local_kfp, only_run(local_kfp)) == ours
    assert set(ours) == set(pipeline.steps)


def test_compiled_yaml_keeps_each_steps_retry_policy(tmp_path: Path) -> None:
    from kfp import compiler

    from pipelines.reference import pipeline

    out = tmp_path / "reference.yaml"
    compiler.Compiler().compile(_pipeline(tmp_path, "pipelines.reference:pipeline"), str(out))
    doc = yaml.safe_load(out.read_text())
    by_step = doc["root"]["dag"]["tasks"]  # one KFP task per step, named after it
    assert set(by_step) == set(pipeline.steps)
    for step, task in by_step.items():
        want = pipeline.steps[step].retry.attempts - 1
        assert task["retryPolicy"]["maxRetryCount"] == want, step
    assert by_step["ingest"]["retryPolicy"]["backoffFactor"] == pipeline.steps[
        "ingest"].retry.multiplier
