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
from reliability.runner.ledger import Ledger, LedgerView

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("pandas", "pandera", "polars", "prometheus_client", "jinja2", "pydantic", "yaml",
         "rich", "reliability.project", "reliability.sla.monitor",
         "reliability.runner.core", "multiprocessing")  # the run loop and its worker pool
# what a task of a pipeline whose steps return JSON values leaves alone too: the pickle
# codec, the forked worker's socket and libc calls, event payload types, temporary files
UNUSED = ("pickle", "socket", "ctypes", "uuid", "tempfile", "shutil", "random", "hashlib",
          "reliability._payloads", "reliability.adapters._kfp_component")

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
import sys
started_with = set(sys.modules)  # what this interpreter's site setup loads already
import json
from reliability.adapters import HostAttempt, StepBridge

step, upstream = sys.argv[1], json.loads(sys.argv[2])
host_run = sys.argv[3] if len(sys.argv) > 3 else "host-run-1"
bridge = StepBridge("light_pipeline:light", home="home")
ref = bridge.run_step(HostAttempt(host_run, step, 1, False), upstream)
bridge.close()
import linecache
heavy = [m for m in {heavy!r} if m in sys.modules]
unused = [m for m in {unused!r} if m in sys.modules and m not in started_with]
parsed = any(f.endswith("light_pipeline.py") for f in linecache.cache)  # read its source
print(json.dumps({{"ref": ref, "heavy": heavy, "unused": unused, "parsed": parsed}}))
'''


def _task(project: Path, step: str, upstream: dict[str, object],
          host_run: str = "host-run-1") -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(project), str(ROOT)])}
    env.pop("RELIABILITY_HOME", None)
    done = subprocess.run([sys.executable, "task.py", step, json.dumps(upstream), host_run],
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
    (project / "task.py").write_text(TASK.format(heavy=HEAVY, unused=UNUSED))

    first = _task(project, "first", {})  # reads and validates the project: fills the cache
    assert "pydantic" in first["heavy"]
    cached = list((project / "home" / "cache").glob("bridge-*.json"))
    assert len(cached) == 2  # the project's paths, then the pipeline's facts

    assert first["parsed"]  # the steps' sources make the run's code version: cached too
    middle = _task(project, "middle", {"first": first["ref"]})
    assert middle["heavy"] == []  # cached settings; no metrics, templates or validation
    assert middle["unused"] == []
    assert not middle["parsed"]
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


def test_a_run_records_the_code_version_of_the_steps_source_it_ran(tmp_path: Path) -> None:
    """The code version a task records is cached with the settings, keyed by the step
    files' size and modification time: an edited step is a new version at once."""
    from reliability.pipeline import code_version, load_pipeline

    project = tmp_path / "project"
    project.mkdir()
    (project / "reliability.yaml").write_text("home: home\n")
    module = project / "light_pipeline.py"
    module.write_text(PIPELINE)
    (project / "task.py").write_text(TASK.format(heavy=HEAVY, unused=UNUSED))

    def recorded(host_run: str) -> str | None:
        _task(project, "first", {}, host_run)
        ledger = Ledger(project / "home" / "ledger.db")
        try:
            return ledger.get_run(host_run_id("light", host_run)).code_version
        finally:
            ledger.close()

    def expected() -> str:
        sys.modules.pop("light_pipeline", None)
        return code_version(load_pipeline("light_pipeline:light"))

    sys.path.insert(0, str(project))
    try:
        before = recorded("r1")
        assert before == expected()
        assert recorded("r2") == before  # from the cache
        module.write_text(PIPELINE.replace('return {"n": 1}', 'return {"n": 1, "v": 2}'))
        after = recorded("r3")
        assert after != before
        assert after == expected()
    finally:
        sys.path.remove(str(project))
        sys.modules.pop("light_pipeline", None)


def test_a_changed_sla_file_is_read_again(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "reliability.yaml").write_text("home: home\nsla: light.sla.yaml\n")
    sla = project / "light.sla.yaml"
    sla.write_text("version: 1\npipeline: light\nsteps:\n  first: {max_duration: 1h}\n")
    (project / "light_pipeline.py").write_text(PIPELINE)
    (project / "task.py").write_text(TASK.format(heavy=HEAVY, unused=UNUSED))
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
