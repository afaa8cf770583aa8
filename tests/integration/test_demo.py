"""The README's main command, run end to end in a copy of the reference project."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, subprocess_env

from reliability import Ledger

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _copy_project(dest: Path) -> None:
    shutil.copy(ROOT / "reliability.yaml", dest)
    for folder in ("pipelines", "contracts", "chaos", "runbooks"):
        shutil.copytree(ROOT / folder, dest / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))


def test_demo_runs_the_reference_pipeline_under_contracts_chaos_and_slas(
        tmp_path: Path) -> None:
    _copy_project(tmp_path)
    env = subprocess_env()
    env["PYTHONPATH"] = str(tmp_path)
    env.pop("RELIABILITY_HOME", None)
    env["COLUMNS"] = "200"
    res = subprocess.run([sys.executable, "-m", "reliability", "demo"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout
    assert "verdict: passed" in out and "resilience score 100.0/100" in out
    assert "outputs_equal_baseline" in out
    assert res.stderr.count("running reference") == 2  # baseline and chaos run both shown
    assert "WARNING" not in res.stderr
    # the chaos run's loss counts in the chaos series, not in production's
    assert ('reliability_worker_lost_total{pipeline="reference",step="train",trigger="chaos"} 1'
            in out)
    home = tmp_path / ".reliability"
    journal = json.loads((home / "reports" / "chaos-journal.json").read_text())
    held = {p["probe"] for p in journal["steady_state"]["after"] if p["ok"]}
    assert {"contracts_hold", "outputs_equal_baseline", "single_commit_per_step"} <= held
    kinds = {f["type"] for f in journal["faults"]}
    assert {"network", "exception", "kill_worker"} <= kinds
    assert (home / "reports" / "chaos-report.html").read_text().count("<svg") >= 1
    page = (home / "reports" / "chaos-run.html").read_text()
    assert journal["run"]["run_id"] in page and "train attempt 1: worker_lost" in page
    assert (home / "monitoring" / "reliability.rules.yml").exists()
    assert list((home / "runbooks").rglob("worker_lost-train.md"))
    with Ledger(home / "ledger.db") as led:
        run = led.get_run(journal["run"]["run_id"])
        assert run.status == "succeeded"
        statuses = [a["status"] for a in led.attempts(run.run_id, "train")]
        assert statuses == ["worker_lost", "succeeded"]
        assert len(led.commits(run.run_id)) == 6


def test_demo_outside_a_project_says_where_to_run(tmp_path: Path) -> None:
    env = subprocess_env()
    res = subprocess.run([sys.executable, "-m", "reliability", "demo"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 2
    assert "no reliability.yaml" in res.stderr and "repository root" in res.stderr
    assert "Traceback" not in res.stderr
