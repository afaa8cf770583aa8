"""A host task process (KFP and Metaflow start one per task) opens only what its step needs:
no metrics registry, template engine, data-frame or validation library unless the step
uses them; what the project file and SLA file say is read once and cached in the home; a
step's SLA is still watched (live breach, runbook) and the run's SLA is checked by the
process that settles the run. Each task here is a fresh interpreter, as under those hosts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ledger_checks import run_status, step_states

from reliability.adapters import host_run_id
from reliability.runner.ledger import LedgerView

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("pandas", "pandera", "polars", "prometheus_client", "jinja2", "pydantic", "yaml",
         "rich", "reliability.project", "reliability.sla.monitor", "reliability.assembly",
         "reliability.runner.core", "multiprocessing")  # the run loop and its worker pool

PIPELINE = '''\
import json, time
from pathlib import Path
from reliability import Pipeline

light = Pipeline("light")


@light.step()
def first() -> dict:
    return {"n": 1}


@light.step(inputs={"up": "first"})
def middle(up: dict) -> dict:
    return {"n": up["n"] + 1}


@light.step(inputs={"up": "middle"})
def slow(up: dict) -> dict:
    """Runs until its live SLA breach is in the ledger (or 60 s)."""
    import sqlite3
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        db = sqlite3.connect(str(Path("home") / "ledger.db"))
        try:
            if db.execute("SELECT 1 FROM events WHERE kind='sla_breached'").fetchone():
                break
        finally:
            db.close()
        time.sleep(0.02)
    return {"n": up["n"] + 1}
'''

TASK = '''\
import json, sys
from reliability.adapters import HostAttempt, StepBridge

step, upstream = sys.argv[1], json.loads(sys.argv[2])
bridge = StepBridge("light_pipeline:light", home="home")
ref = bridge.run_step(HostAttempt("host-run-1", step, 1, False), upstream)
bridge.close()
heavy = [m for m in {heavy!r} if m in sys.modules]
print(json.dumps({{"ref": ref, "heavy": heavy}}))
'''


def _task(project: Path, step: str, upstream: dict[str, object]) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(project), str(ROOT)])}
    env.pop("RELIABILITY_HOME", None)
    done = subprocess.run([sys.executable, "task.py", step, json.dumps(upstream)],
                          cwd=project, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_a_task_process_imports_no_heavy_library_and_still_watches_slas(
        tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "reliability.yaml").write_text("home: home\nsla: light.sla.yaml\n")
    (project / "light.sla.yaml").write_text(
        "version: 1\npipeline: light\nrun: {max_duration: 0.1s}\n"
        "steps:\n  slow: {max_duration: 0.3s, severity: ticket}\n")
    (project / "light_pipeline.py").write_text(PIPELINE)
    (project / "task.py").write_text(TASK.format(heavy=HEAVY))

    first = _task(project, "first", {})  # reads and validates the project: fills the cache
    assert "pydantic" in first["heavy"]
    cached = list((project / "home" / "cache").glob("bridge-*.json"))
    assert len(cached) == 2  # the project's paths, then the pipeline's facts

    middle = _task(project, "middle", {"first": first["ref"]})
    assert middle["heavy"] == []  # cached settings; no metrics, templates or validation
    _task(project, "slow", {"middle": middle["ref"]})  # its breach loads what it needs

    home = project / "home"
    run_id = host_run_id("light", "host-run-1")
    assert step_states(home, run_id) == {"first": "succeeded", "middle": "succeeded",
                                         "slow": "succeeded"}
    assert run_status(home, run_id) == "succeeded"
    breaches = [e for e in LedgerView(home / "ledger.db").events(run_id)
                if e["kind"] == "sla_breached"]
    details = [e["details"] for e in breaches]
    # the step's breach was published while it ran, the run's by the settling process
    assert [(e["step"], d["sla"], d["live"], d["severity"]) for e, d in zip(
        breaches, details, strict=True)] == [("slow", "max_duration", True, "ticket"),
                                             (None, "max_duration", False, "page")]
    runbooks = sorted(p.name for p in (home / "runbooks" / run_id).glob("*.md"))
    assert runbooks == ["sla_breach-run-max_duration.md", "sla_breach-slow-max_duration.md"]


def test_a_changed_sla_file_is_read_again(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "reliability.yaml").write_text("home: home\nsla: light.sla.yaml\n")
    sla = project / "light.sla.yaml"
    sla.write_text("version: 1\npipeline: light\nsteps:\n  first: {max_duration: 1h}\n")
    (project / "light_pipeline.py").write_text(PIPELINE)
    (project / "task.py").write_text(TASK.format(heavy=HEAVY))
    _task(project, "first", {})
    sla.write_text("version: 1\npipeline: light\nsteps:\n  nope: {max_duration: 1h}\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(project), str(ROOT)])}
    done = subprocess.run([sys.executable, "task.py", "first", "{}"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0
    assert "'nope' is not a step of pipeline 'light'" in done.stderr
    assert "light.sla.yaml" in done.stderr


def test_a_run_past_its_max_duration_is_breached_live_in_a_long_lived_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process hosts (Dagster, Prefect, ZenML) run a whole run in one process: the run's
    budget is watched while it goes on."""
    from reliability import Pipeline
    from reliability.adapters import HostAttempt, StepBridge

    project = tmp_path / "project"
    project.mkdir()
    (project / "reliability.yaml").write_text("home: home\nsla: wait.sla.yaml\n")
    (project / "wait.sla.yaml").write_text(
        "version: 1\npipeline: wait\nrun: {max_duration: 0.2s}\n")
    monkeypatch.chdir(project)
    home = project / "home"
    pipe = Pipeline("wait")

    @pipe.step()
    def hold() -> int:
        """Runs until the run's live breach is in the ledger (or 60 s)."""
        import time

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(e["kind"] == "sla_breached" for e in LedgerView(
                    home / "ledger.db").events(host_run_id("wait", "r1"))):
                return 1
            time.sleep(0.02)
        return 0

    bridge = StepBridge(pipe, home=home)
    try:
        bridge.run_step(HostAttempt("r1", "hold", 1, False), {})
    finally:
        bridge.close()
    run_id = host_run_id("wait", "r1")
    breaches = [e for e in LedgerView(home / "ledger.db").events(run_id)
                if e["kind"] == "sla_breached"]
    assert [(e["step"], e["details"]["sla"], e["details"]["live"]) for e in breaches] == [
        (None, "max_duration", True)]  # once: the check at the run's end does not repeat it
    assert (home / "runbooks" / run_id / "sla_breach-run-max_duration.md").is_file()
