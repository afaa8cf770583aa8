"""Running Dagster in the adapter tests: event counts, and a job on the multiprocess
executor (a temporary persistent instance) whose step process the test SIGKILLs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from helpers import subprocess_env, wait_for

HERE = Path(__file__).parent

JOB_FILE = """\
import json
import sys
sys.path[:0] = [{here!r}, {root!r}]

from dagster import DagsterInstance, execute_job, reconstructable

import host_pipelines as hp
from reliability.adapters.dagster import run_config, to_definitions, to_job

home = {home!r}


def make_job():
    return {make_job}


if __name__ == "__main__":
    import os
    os.makedirs({instance!r}, exist_ok=True)
    with DagsterInstance.local_temp({instance!r}) as instance:
        config = run_config(json.loads(sys.argv[1]))
        # step processes fork from a server that imported these once (spawning a fresh
        # interpreter per step costs seconds on a loaded machine)
        config["execution"] = {{"config": {{"multiprocess": {{"start_method": {{"forkserver": {{
            "preload_modules": ["dagster", "pandas", "reliability.adapters.dagster",
                                "host_pipelines"]}}}}}}}}}}
        result = execute_job(reconstructable(make_job), instance=instance,
                             run_config=config)
        restarted = [ev.step_key for ev in result.all_events
                     if ev.event_type_value == "STEP_RESTARTED"]
        materialized = sorted(ev.asset_key.path[-1] for ev in result.all_events
                              if ev.event_type_value == "ASSET_MATERIALIZATION")
        print("RESULT " + json.dumps({{"success": result.success, "run_id": result.run_id,
                                       "restarted": restarted,
                                       "materialized": materialized}}))
"""


def events(result: Any, kind: str, step: str) -> int:
    """How many Dagster events of ``kind`` the run logged for ``step``."""
    return sum(1 for ev in result.all_events
               if ev.event_type_value == kind and ev.step_key == step)


def kill_first_attempt(tmp_path: Path, make_job: str, home: Path, params: dict[str, Any],
                       step: str) -> tuple[dict[str, Any], int]:
    """Run ``make_job`` (an expression over ``hp``, ``home``, ``to_job`` and
    ``to_definitions``) on the multiprocess executor with ``params`` holding ``step``'s
    first attempt; SIGKILL that attempt's process. Returns the run's summary and the pid."""
    signals = Path(params["signal_dir"])
    job_file = tmp_path / "job.py"
    job_file.write_text(JOB_FILE.format(here=str(HERE), root=str(HERE.parent.parent),
                                        instance=str(tmp_path / "dagster"),
                                        home=str(home), make_job=make_job))
    proc = subprocess.Popen([sys.executable, str(job_file), json.dumps(params)],
                            cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        marker = signals / f"{step}.running"
        wait_for(lambda: marker.exists() or proc.poll() is not None, timeout=300,
                 what=f"{step}'s first attempt in a step process")
        assert marker.exists(), proc.communicate()[0][-4000:]
        victim = int(marker.read_text())
        assert victim != proc.pid  # the multiprocess executor's step process
        os.kill(victim, signal.SIGKILL)
        (signals / "release").touch()  # no later first try (our runner's, say) waits
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    [line] = [ln for ln in out.splitlines() if ln.startswith("RESULT ")] or [out[-4000:]]
    return json.loads(line.removeprefix("RESULT ")), victim
