"""An interrupted experiment is aborted, not deviated; nested toxics of the pytest helper."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reliability.chaos.leases import ProxyApi
from reliability.chaos.pytest_plugin import ChaosProxy
from reliability.chaos.target import TargetProcess

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

VICTIM = '''
import os
import time
from pathlib import Path

from reliability import Pipeline, Retry

pipeline = Pipeline("victim")


@pipeline.step(retry=Retry(attempts=2, backoff=0), timeout=60)
def wait(ctx):
    phase = "baseline" if ctx.run_id.endswith("-baseline") else "method"
    if phase == os.environ["VICTIM_HANG_IN"]:
        Path(os.environ["VICTIM_MARK"]).write_text(phase)
        time.sleep(30)
    return 1
'''

LAG = "{type: network, name: lag, proxy: svc, toxic: latency, attributes: {latency: 100}}"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[ProxyApi, int]]:
    """A proxy server and a service owned by the test, as a staging Toxiproxy would be."""
    with TargetProcess({"svc": "pipelines.wine_service:WineService"}) as target:
        assert target.api_url is not None
        yield ProxyApi(target.api_url), target.ports["svc"]


def _experiment(kind: str, api: ProxyApi, port: int) -> str:
    if kind == "embedded":  # the experiment starts the proxy server and the service itself
        target = '{services: [{name: svc, start: "pipelines.wine_service:WineService"}]}'
    elif kind == "staging":
        target = f'{{proxy_api: "{api.url}", services: [{{name: svc, upstream: ' \
                 f'"127.0.0.1:{port}"}}]}}'
    else:  # external: no run here, the method is a stretch of time against the proxies
        target = f'{{mode: external, proxy_api: "{api.url}", duration: 30}}'
    return textwrap.dedent(f"""
        title: interrupted
        target: {target}
        method: [{LAG}]
        blast_radius: {{proxies: [svc]}}
        """)


def _ready(kind: str, phase: str, mark: Path, api: ProxyApi) -> bool:
    if kind == "external":
        return bool(api.toxics("svc"))  # the method began
    return mark.exists() and mark.read_text() == phase


@pytest.mark.parametrize(("sig", "group", "phase", "kind"), [
    pytest.param(signal.SIGINT, True, "method", "embedded", id="ctrl-c-to-the-group"),
    pytest.param(signal.SIGTERM, False, "method", "staging", id="sigterm-during-the-method"),
    pytest.param(signal.SIGTERM, False, "baseline", "embedded", id="sigterm-in-the-baseline"),
    pytest.param(signal.SIGTERM, False, "method", "external", id="sigterm-outside-a-run"),
])
def test_an_interrupted_experiment_is_aborted_and_rolled_back(
        tmp_path: Path, served: tuple[ProxyApi, int], sig: signal.Signals, group: bool,
        phase: str, kind: str) -> None:
    api, port = served
    if kind == "external":
        api.create_proxy("svc", f"127.0.0.1:{port}")
    (tmp_path / "victim.py").write_text(VICTIM)
    (tmp_path / "reliability.yaml").write_text("pipeline: victim:pipeline\nhome: state\n")
    exp = tmp_path / "exp.yaml"
    exp.write_text(_experiment(kind, api, port))
    mark, out = tmp_path / "started", tmp_path / "out.txt"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}",
           "VICTIM_HANG_IN": phase, "VICTIM_MARK": str(mark), "COLUMNS": "200"}
    with out.open("w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "reliability", "chaos", "run", str(exp), "--journal",
             str(tmp_path / "j.json"), "--report", str(tmp_path / "r.html")],
            cwd=tmp_path, env=env, stdout=fh, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        deadline = time.monotonic() + 40
        while not _ready(kind, phase, mark, api) and proc.poll() is None:
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.05)
        assert proc.poll() is None, out.read_text()
        time.sleep(0.2)  # well inside the hang
        if group:
            os.killpg(proc.pid, sig)  # what a terminal's Ctrl-C does
        else:
            proc.send_signal(sig)
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    text = out.read_text()
    assert code == 1, text  # as for an abort condition: not passed
    assert "verdict: aborted" in text and f"interrupted by {sig.name}" in text, text
    assert "Traceback" not in text, text
    journal = json.loads((tmp_path / "j.json").read_text())
    assert journal["status"] == "aborted"
    assert journal["interrupted"] == {"signal": sig.name, "phase": phase}
    assert f"interrupted by {sig.name} during the {phase}" in journal["aborted"]
    assert journal["rollbacks"] and all(r["ok"] for r in journal["rollbacks"]), journal
    if phase == "method":
        assert any(r["action"] == "undo toxic" for r in journal["rollbacks"])
    report = (tmp_path / "r.html").read_text()
    assert ">aborted</span>" in report and f"interrupted by {sig.name}" in report
    if kind == "staging":
        assert "svc" not in api.proxies()  # its toxic removed and the proxy deleted
    if kind == "external":
        assert api.toxics("svc") == []  # the test's proxy stays, without the toxic
        api.delete_proxy("svc")


def test_nested_toxics_of_one_type_and_stream_each_remove_their_own(
        chaos_proxy: ChaosProxy) -> None:
    upstream = socket.create_server(("127.0.0.1", 0))
    try:
        chaos_proxy.create("db", f"127.0.0.1:{upstream.getsockname()[1]}")
        with chaos_proxy.toxic("db", "latency", latency=10) as outer:
            with chaos_proxy.toxic("db", "latency", latency=20) as inner:
                assert outer != inner
                assert chaos_proxy.api.toxics("db") == sorted([outer, inner])
            assert chaos_proxy.api.toxics("db") == [outer]
            with chaos_proxy.toxic("db", "latency", stream="upstream", latency=5) as up:
                assert sorted(chaos_proxy.api.toxics("db")) == sorted([outer, up])
        assert chaos_proxy.api.toxics("db") == []
    finally:
        upstream.close()


def test_nested_down_blocks_keep_the_proxy_down_until_the_outermost_ends(
        chaos_proxy: ChaosProxy) -> None:
    upstream = socket.create_server(("127.0.0.1", 0))
    try:
        chaos_proxy.create("db", f"127.0.0.1:{upstream.getsockname()[1]}")
        with chaos_proxy.toxic("db", "down"):
            with chaos_proxy.toxic("db", "down"):
                assert chaos_proxy.api.proxies()["db"]["enabled"] is False
            assert chaos_proxy.api.proxies()["db"]["enabled"] is False
        assert chaos_proxy.api.proxies()["db"]["enabled"] is True
    finally:
        upstream.close()
