"""The `reliability chaos` command and the chaos pytest plugin, as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def test_validate_reports_bad_experiments_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("title: t\nmethod:\n  - {type: kill_worker, step: trian}\n")
    out = _run(["-m", "reliability", "chaos", "validate", str(bad)], ROOT)
    assert out.returncode == 2
    assert "method[0].step" in out.stderr and "'train'" in out.stderr
    assert "Traceback" not in out.stderr
    good = _run(["-m", "reliability", "chaos", "validate",
                 *(str(p) for p in sorted((ROOT / "chaos").glob("*.yaml")))], ROOT)
    assert good.returncode == 0, good.stderr
    assert good.stdout.count(": ok") == len(list((ROOT / "chaos").glob("*.yaml")))


PLUGIN_TEST = '''
import pytest
from reliability import Pipeline, Retry, Runner
from reliability.chaos import KillWorker
import time

pipe = Pipeline("plug")

@pipe.step(retry=Retry(attempts=3, backoff=0), timeout=20)
def nap():
    time.sleep(0.3)
    return 1

@pytest.mark.chaos(seed=4)
def test_kill(chaos_inject, chaos_seed, tmp_path):
    assert chaos_seed == 4
    runner = Runner(pipe, home=tmp_path)
    base = runner.run()
    with chaos_inject(runner, KillWorker(step="nap", after=0.1)) as ctl:
        res = runner.run(resume=False)
    assert res.outputs == base.outputs
    assert any(e["kind"] == "worker_lost" for e in ctl.timeline)

def test_proxy(chaos_proxy):
    import socket
    srv = socket.create_server(("127.0.0.1", 0))
    listen = chaos_proxy.create("echo", "127.0.0.1:%d" % srv.getsockname()[1])
    with chaos_proxy.toxic("echo", "latency", latency=10) as name:
        assert name in chaos_proxy.api.toxics("echo")
    assert chaos_proxy.api.toxics("echo") == []
    srv.close()
'''


def test_pytest_plugin_is_off_by_default_and_seeded(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(PLUGIN_TEST)
    # the plugin is loaded through its pytest11 entry point: installing is enabling
    base = ["-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", "test_user.py"]
    off = _run(base, tmp_path)
    assert off.returncode == 0, off.stdout
    assert "1 passed, 1 skipped" in off.stdout
    on = _run([*base, "--chaos"], tmp_path)
    assert on.returncode == 0, on.stdout
    assert "2 passed" in on.stdout
