"""`reliability init` in an empty directory makes a project that works straight away:
`reliability run`, `reliability contracts test`, `pytest` and `reliability chaos run` pass,
with the scaffolded SLA, schedule, contracts and runbook override loaded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reliability.cli.main import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def reliability(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The `reliability` command (or another module) run in ``cwd`` as a user would."""
    env = {k: v for k, v in os.environ.items() if k != "RELIABILITY_HOME"}
    env["PYTHONPATH"] = str(ROOT)  # the package under test, nothing else from this repo
    cmd = [sys.executable, "-m", *(args if args[0] == "pytest" else ("reliability", *args))]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
                          check=False)


def test_init_then_run_contracts_test_pytest_and_chaos_run_all_pass(tmp_path: Path) -> None:
    project = tmp_path / "Shop Orders"
    project.mkdir()
    init = reliability(project, "init")
    assert init.returncode == 0, init.stderr
    created = {p.relative_to(project).as_posix() for p in project.rglob("*") if p.is_file()}
    assert {"reliability.yaml", "pipelines/shop_orders.py", "contracts/shop_orders.sla.yaml",
            "contracts/shop_orders.schedule.yaml", "chaos/kill-worker.yaml",
            "runbooks/step_failed.md.j2", "tests/test_shop_orders.py",
            "contracts/shop_orders/generate.output.yaml",
            "contracts/shop_orders/snapshot/manifest.json"} <= created

    run = reliability(project, "run")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "succeeded" in run.stdout and "contracts: 5 from" in run.stdout
    assert "shop_orders.sla.yaml" in run.stdout
    assert (project / ".reliability" / "ledger.db").is_file()

    tested = reliability(project, "contracts", "test")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "0 failed" in tested.stdout and "mutation kill rate 100%" in tested.stdout
    lint = reliability(project, "contracts", "lint")
    assert lint.returncode == 0 and "0 warning" in lint.stdout, lint.stdout

    pytest_run = reliability(project, "pytest", "-q", "-p", "no:cacheprovider")
    assert pytest_run.returncode == 0, pytest_run.stdout + pytest_run.stderr
    assert "2 passed" in pytest_run.stdout

    chaos = reliability(project, "chaos", "run", "chaos/kill-worker.yaml")
    assert chaos.returncode == 0, chaos.stdout + chaos.stderr
    assert "verdict: passed" in chaos.stdout

    for extra in (("sla", "check"), ("schedule", "list"), ("runbooks", "list")):
        out = reliability(project, *extra)
        assert out.returncode == 0, (extra, out.stdout + out.stderr)
    assert "runbooks/step_failed.md.j2" in reliability(project, "runbooks", "list").stdout


def test_init_refuses_to_overwrite_and_checks_the_name(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path / "p"), "--name", "orders"]) == 0
    assert (tmp_path / "p" / "pipelines" / "orders.py").is_file()
    before = (tmp_path / "p" / "reliability.yaml").read_text()
    capsys.readouterr()
    assert main(["init", str(tmp_path / "p"), "--name", "orders"]) == 2
    assert "would overwrite" in capsys.readouterr().err
    assert (tmp_path / "p" / "reliability.yaml").read_text() == before
    assert main(["init", str(tmp_path / "q"), "--name", "class"]) == 2
    assert main(["init", str(tmp_path / "q"), "--name", "two words"]) == 2
    assert not (tmp_path / "q").exists()
