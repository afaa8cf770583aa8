"""The Airflow 3 adapter against real Airflow: dag.test() on SQLite, LocalExecutor for kills.

Each scenario writes a DAG file (as a team would), runs it in its own Python process with
AIRFLOW_HOME in a temporary directory, and reads our ledger, store and runbooks back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hosts import require_host

require_host("airflow")

import host_pipelines as hp  # noqa: E402
from helpers import ROOT, free_port, stop, subprocess_env, wait_for  # noqa: E402
from ledger_checks import (  # noqa: E402
    assert_contract_stop,
    assert_retried_once,
    attempt_rows,
    attempts_metric,
    only_run,
    outputs,
    run_status,
    runner_outputs,
)

pytestmark = [pytest.mark.airflow, pytest.mark.integration, pytest.mark.timeout(600)]

HERE = Path(__file__).parent

DAG_FILE = """\
import json
import sys
sys.path[:0] = [{here!r}, {root!r}]
from pathlib import Path

import host_pipelines as hp
import pipelines.reference
from reliability.adapters.airflow import to_dag
from reliability.chaos.faults import ExceptionFault
from reliability.chaos.hook import ChaosHook
from reliability.contracts import ContractHook, load_contracts

HOOKS = {hooks}
dag = to_dag({pipeline}, dag_id={dag_id!r}, home={home!r}, contracts=False, hooks=HOOKS)

if __name__ == "__main__":
    run = dag.test(run_conf=json.loads(sys.argv[1]), use_executor={use_executor})
    tis = {{ti.task_id: [str(ti.state.value if hasattr(ti.state, "value") else ti.state),
                         ti.try_number] for ti in run.get_task_instances()}}
    print("RESULT " + json.dumps({{"state": str(run.state), "tasks": tis}}))
"""


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An AIRFLOW_HOME with a migrated SQLite metadata database (once per module)."""
    home = tmp_path_factory.mktemp("airflow_home")
    env = subprocess_env(
        AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="False", AIRFLOW__CORE__PARALLELISM="4",
        AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
        # a killed task's failure normally reaches the scheduler at once; should that report
        # be lost on a loaded machine, the scheduler notices the missing heartbeat in a
        # minute rather than the default five (the kill test allows 400 s)
        AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT="60")
    env.pop("AIRFLOW__CORE__EXECUTOR", None)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True,
                   capture_output=True, timeout=300)
    return env


def _run_dag(tmp_path: Path, env: dict[str, str], dag_id: str, hooks: str,
             conf: dict[str, Any], *, use_executor: bool = False,
             background: bool = False, pipeline: str = "hp.small") -> Any:
    dags = tmp_path / "dags"
    dags.mkdir(exist_ok=True)
    home = tmp_path / "home"
    dag_file = dags / f"{dag_id}.py"
    dag_file.write_text(DAG_FILE.format(here=str(HERE), root=str(ROOT), hooks=hooks,
                                        dag_id=dag_id, home=str(home), pipeline=pipeline,
                                        use_executor=use_executor))
    run_env = dict(env, AIRFLOW__CORE__DAGS_FOLDER=str(dags))
    cmd = [sys.executable, str(dag_file), json.dumps(conf)]
    if background:
        return subprocess.Popen(cmd, env=run_env, cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    proc = subprocess.run(cmd, env=run_env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=540, check=False)
    return _result(proc.returncode, proc.stdout + proc.stderr)


def _result(code: int, out: str) -> dict[str, Any]:
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    assert code == 0 and lines, f"the DAG file failed (exit {code}):\n{out[-4000:]}"
    return dict(json.loads(lines[-1].removeprefix("RESULT ")))


CHAOS_ONCE = ('[ChaosHook([ExceptionFault(step="transform", error="ConnectionError", '
              'attempts=[1])])]')


def test_exception_fault_once_is_retried_by_airflow_and_recorded(
        tmp_path: Path, airflow_env: dict[str, str]) -> None:
    result = _run_dag(tmp_path, airflow_env, "small_retry", CHAOS_ONCE, {})
    assert result["state"] == "success"
    assert result["tasks"]["transform"] == ["success", 2]  # Airflow's own retry
    home = tmp_path / "home"
    run_id = assert_retried_once(home, "small", "transform")
    assert attempt_rows(home, run_id, "transform")[0]["error_type"] == "ConnectionError"
    # the digests Airflow's tasks committed are our own runner's
    assert outputs(home, run_id) == runner_outputs(hp.small, tmp_path / "ours", {})


def test_contract_violation_is_not_retried_and_skips_downstream(
        tmp_path: Path, airflow_env: dict[str, str]) -> None:
    contracts = hp.contract_dir(tmp_path)
    hooks = f"[ContractHook(load_contracts(Path({str(contracts)!r}), hp.small))]"
    result = _run_dag(tmp_path, airflow_env, "small_contract", hooks, {"bad": True})
    assert result["state"] == "failed"
    assert result["tasks"]["extract"] == ["failed", 1]  # retries=2, yet one try
    assert {t: s for t, (s, _) in result["tasks"].items() if t != "extract"} == {
        "transform": "upstream_failed", "summary": "upstream_failed",
        "fingerprint": "upstream_failed"}
    home = tmp_path / "home"
    run_id = only_run(home)
    assert_contract_stop(home, run_id)
    assert attempts_metric(home, run_id, "small", "extract") == {"contract_violated": 1.0}


def test_reference_pipeline_outputs_equal_our_runners(
        tmp_path: Path, airflow_env: dict[str, str]) -> None:
    from pipelines.reference import pipeline

    result = _run_dag(tmp_path, airflow_env, "reference_digests", "[]", {"seed": 5},
                      pipeline="pipelines.reference.pipeline")
    assert result["state"] == "success"
    home = tmp_path / "home"
    assert outputs(home, only_run(home)) == runner_outputs(pipeline, tmp_path / "ours",
                                                           {"seed": 5})


@pytest.fixture
def api_server(airflow_env: dict[str, str], tmp_path: Path) -> Iterator[dict[str, str]]:
    """``airflow api-server`` on a free loopback port: LocalExecutor's task processes talk
    to its execution API."""
    port = free_port()
    env = dict(airflow_env, AIRFLOW__API__HOST="127.0.0.1", AIRFLOW__API__PORT=str(port),
               AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
               AIRFLOW__CORE__EXECUTOR="LocalExecutor")
    log = tmp_path / "api-server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "airflow", "api-server", "--host",
                                 "127.0.0.1", "--port", str(port)], env=env, stdout=out,
                                stderr=subprocess.STDOUT)

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health",
                                        timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            assert proc.poll() is None, log.read_text()[-3000:]
            return False

    try:
        wait_for(ready, timeout=180, what="airflow api-server")
        yield env
    finally:
        stop(proc)


def test_sigkill_of_the_task_process_is_recorded_and_retried(
        tmp_path: Path, api_server: dict[str, str]) -> None:
    signals = tmp_path / "signals"
    signals.mkdir()
    conf = {"hold": "transform", "signal_dir": str(signals)}
    proc = _run_dag(tmp_path, api_server, "small_kill", "[]", conf, use_executor=True,
                    background=True)
    try:
        marker = signals / "transform.running"
        wait_for(lambda: marker.exists() or proc.poll() is not None, timeout=300,
                 what="transform's first attempt")
        assert proc.poll() is None, proc.communicate()[0][-4000:]
        victim = int(marker.read_text())
        assert victim not in (os.getpid(), proc.pid)  # a task process of LocalExecutor
        os.kill(victim, signal.SIGKILL)
        out, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = _result(proc.returncode, out)
    assert result["state"] == "success"
    assert result["tasks"]["transform"][0] == "success"
    home = tmp_path / "home"
    run_id = only_run(home)
    rows = attempt_rows(home, run_id, "transform")
    assert [a["status"] for a in rows][-2:] == ["worker_lost", "succeeded"]
    lost = rows[-2]
    assert lost["worker_pid"] == victim and lost["error_type"] == "WorkerLost"
    assert run_status(home, run_id) == "succeeded"
    assert attempts_metric(home, run_id, "small", "transform") == {"worker_lost": 1.0,
                                                                  "succeeded": 1.0}
    assert outputs(home, run_id) == runner_outputs(hp.small, tmp_path / "ours", conf)


GUARDED_DAG = """\
import datetime as dt
import json
import sys
sys.path[:0] = [{root!r}]
from airflow.sdk import DAG, task
from reliability.adapters.airflow import reliable
from reliability.chaos.faults import ExceptionFault
from reliability.chaos.hook import ChaosHook


@task
def rows():
    return [1.0, 2.0, 3.0]


@reliable(home={home!r}, hooks=[ChaosHook([ExceptionFault(step="clean", attempts=[1])])])
@task(retries=2, retry_delay=dt.timedelta(0))
def clean(rows):  # a team's own task, unchanged
    return {{"n": len(rows), "total": sum(rows)}}


with DAG("guarded", schedule=None, start_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC)) as dag:
    clean(rows())

if __name__ == "__main__":
    run = dag.test()
    tis = {{ti.task_id: [str(ti.state.value if hasattr(ti.state, "value") else ti.state),
                         ti.try_number] for ti in run.get_task_instances()}}
    print("RESULT " + json.dumps({{"state": str(run.state), "tasks": tis}}))
"""


def test_reliable_adds_our_hooks_to_an_existing_task(tmp_path: Path,
                                                     airflow_env: dict[str, str]) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    home = tmp_path / "home"
    dag_file = dags / "guarded.py"
    dag_file.write_text(GUARDED_DAG.format(root=str(ROOT), home=str(home)))
    proc = subprocess.run([sys.executable, str(dag_file)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=540, check=False,
                          env=dict(airflow_env, AIRFLOW__CORE__DAGS_FOLDER=str(dags)))
    result = _result(proc.returncode, proc.stdout + proc.stderr)
    assert result["state"] == "success"
    assert result["tasks"]["clean"] == ["success", 2]
    assert_retried_once(home, "guarded", "clean")
