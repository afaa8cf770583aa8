"""chaos explore: a failed run breaks the run_succeeds invariant (API and command)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reliability import Pipeline, Retry
from reliability.chaos.experiment import load_experiment
from reliability.chaos.explore import explore

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

fragile = Pipeline("fragile")


@fragile.step(retry=Retry(attempts=3, backoff=0), timeout=20)
def load() -> list[int]:
    return [1, 2, 3]


@fragile.step(retry=Retry(attempts=1), timeout=20)  # no retry: a kill fails the run
def daily_revenue(load: list[int]) -> int:
    time.sleep(0.5)
    return sum(load)


def test_a_failed_run_is_a_violation(tmp_path: Path) -> None:
    result = explore(fragile, home=tmp_path, steps=["daily_revenue"], kinds=["kill_worker"],
                     max_faults=1, max_examples=3, budget=60, seed=2,
                     pipeline_ref="tests.integration.test_explore_invariants:fragile")
    assert result.found, result
    assert (result.violation or "").startswith("run_succeeds: the run failed (daily_revenue:")
    assert [(f.type, f.step) for f in result.schedule] == [  # type: ignore[attr-defined]
        ("kill_worker", "daily_revenue")]
    replay = tmp_path / "found.yaml"
    replay.write_text(result.experiment_yaml or "")
    spec, _ = load_experiment(replay)
    assert spec.steady_state.run_succeeds  # the replay checks the invariant that broke


def test_failed_runs_can_be_accepted(tmp_path: Path) -> None:
    result = explore(fragile, home=tmp_path, steps=["daily_revenue"], kinds=["kill_worker"],
                     max_faults=1, max_examples=2, budget=60, seed=2, run_succeeds=False)
    assert not result.found and result.examples >= 1


def test_the_command_reports_the_violation(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "reliability", "chaos", "explore", "--pipeline",
         "tests.integration.test_explore_invariants:fragile", "--steps", "daily_revenue",
         "--kinds", "kill_worker", "--max-faults", "1", "--max-examples", "2",
         "--home", str(tmp_path / "home"), "--out", str(tmp_path / "found.yaml")],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
        text=True, timeout=120, check=False)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "no invariant violation found" not in out.stdout
    assert "violation: run_succeeds: the run failed" in out.stdout
    assert "run_succeeds: true" in (tmp_path / "found.yaml").read_text()
