from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import subprocess_env

from reliability.cli.main import main


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reliability", *args], cwd=tmp_path,
                          env=subprocess_env(), capture_output=True, text=True, timeout=120,
                          check=False)


def test_bad_input_gives_one_line_and_exit_2(tmp_path: Path) -> None:
    cases = [
        (["run", "--pipeline", "nope_module:pipe"], "cannot import 'nope_module'"),
        (["run", "--pipeline", "sample_pipelines:chain", "-p", "rows"], "is not KEY=VALUE"),
        (["run", "--pipeline", "sample_pipelines:chain", "-p", "rows=lots"], "parameter rows"),
        (["run", "--pipeline", "sample_pipelines:chain", "--interval", "today"], "START/END"),
        (["runs", "list", "--home", str(tmp_path / "none")], "no run ledger"),
    ]
    for args, message in cases:
        res = _cli(tmp_path, *args)
        assert res.returncode == 2, (args, res.stderr)
        assert message in res.stderr and "Traceback" not in res.stderr, res.stderr


def test_malformed_project_file_is_reported_with_its_path(tmp_path: Path) -> None:
    (tmp_path / "reliability.yaml").write_text("pipeline: [unclosed\n")
    res = _cli(tmp_path, "run")
    assert res.returncode == 2
    assert "reliability.yaml" in res.stderr and "malformed YAML" in res.stderr
    assert "Traceback" not in res.stderr


def test_run_then_list_and_show(tmp_path: Path) -> None:
    home = str(tmp_path / "h")
    res = _cli(tmp_path, "run", "--pipeline", "sample_pipelines:flaky", "--home", home,
               "--no-sla")
    assert res.returncode == 1  # a step failed: exit 1, not a crash
    assert "↻ wobbly attempt 1" in res.stderr and "✗ fatal" in res.stderr  # live progress
    assert "failed fatal" in res.stdout and "not run (upstream failed): after_fatal" in res.stdout
    listing = _cli(tmp_path, "runs", "list", "--home", home)
    assert listing.returncode == 0 and "flaky" in listing.stdout and "failed" in listing.stdout
    run_id = res.stdout.split("run ", 2)[1].split()[0]
    assert run_id in listing.stdout  # whole, even in an 80-column terminal
    as_json = json.loads(_cli(tmp_path, "runs", "list", "--home", home, "--json").stdout)
    assert [(r["run_id"], r["status"]) for r in as_json] == [(run_id, "failed")]
    shown = _cli(tmp_path, "runs", "show", run_id, "--home", home, "--json")
    data = json.loads(shown.stdout)
    assert data["run"]["status"] == "failed"
    statuses = {s["step"]: s["status"] for s in data["steps"]}
    assert statuses["after_fatal"] == "upstream_failed" and statuses["wobbly"] == "succeeded"
    assert any(e["kind"] == "step_retrying" for e in data["events"])
    table = _cli(tmp_path, "runs", "show", run_id[:12], "--home", home, "--html",
                 str(tmp_path / "pages" / "run.html"))
    assert table.returncode == 0 and "attempts" in table.stdout and "ValueError" in table.stdout
    page = (tmp_path / "pages" / "run.html").read_text()
    assert run_id in page and "<svg" in page and "upstream_failed" in page
    blocked = tmp_path / "file"
    blocked.write_text("")
    bad = _cli(tmp_path, "runs", "show", run_id, "--home", home, "--html",
               str(blocked / "run.html"))
    assert bad.returncode == 2 and "--html" in bad.stderr and "Traceback" not in bad.stderr


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    with pytest.raises(SystemExit) as ex:
        main(["--version"])
    assert ex.value.code == 0
    assert "reliability 0.1.0" in capsys.readouterr().out
