"""`reliability serve` as a process: it takes its address from reliability.yaml, serves until
Ctrl-C and exits 0; unusable settings are one clear error, exit 2."""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from helpers import free_port, start, subprocess_env, wait_for

pytestmark = pytest.mark.integration


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def test_serve_uses_the_project_address_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "reliability.yaml").write_text(
        f"pipeline: pipelines.reference:pipeline\nhome: state\n"
        f"serve: {{host: 127.0.0.1, port: {port}, url: 'http://oncall.example'}}\n")
    log = tmp_path / "serve.log"
    env = subprocess_env()
    env.pop("RELIABILITY_HOME", None)
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "reliability", "serve"], cwd=tmp_path,
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _up(f"http://127.0.0.1:{port}/healthz"), 30, "reliability serve")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/runs", timeout=5) as resp:
            assert b"no runs recorded" in resp.read()
        assert (tmp_path / "state" / "ledger.db").is_file()  # home: from the project file
        text = log.read_text()
        assert f"serving http://127.0.0.1:{port}" in text
        assert "webhook http://oncall.example/alerts/webhook" in text  # serve.url
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_busy_port_or_a_missing_sla_file_is_one_clear_error(tmp_path: Path) -> None:
    port = free_port()
    holder = start([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                   tmp_path / "holder.log")
    try:
        wait_for(lambda: _up(f"http://127.0.0.1:{port}/"), 30, "the port holder")
        busy = subprocess.run(
            [sys.executable, "-m", "reliability", "serve", "--home", str(tmp_path / "h"),
             "--port", str(port)], cwd=tmp_path, env=subprocess_env(), capture_output=True,
            text=True, timeout=60, check=False)
        assert busy.returncode == 2
        assert "--port" in busy.stderr and "Traceback" not in busy.stderr
    finally:
        holder.terminate()
        holder.wait()
    missing = subprocess.run(
        [sys.executable, "-m", "reliability", "serve", "--sla", "nope.yaml", "--port", "0"],
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=60,
        check=False)
    assert missing.returncode == 2 and "nope.yaml" in missing.stderr
    assert "Traceback" not in missing.stderr
