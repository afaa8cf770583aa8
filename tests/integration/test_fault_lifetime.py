"""How long a fault lasts: its attempt, or its ``duration``.

No fault's effect reaches another step: after the faulted attempt, the next attempt on the
same worker (one worker, so it is the same process unless the fault killed it) runs clean.

For every fault type the pipeline runs ``faulted`` under the fault, then ``probe`` on the same
worker. A hook records the worker's state as each attempt begins. ``probe`` decodes a 16 MiB input, allocates 64 MiB, writes 2 MiB, compares the
process's limits, signal handlers and threads with a clean worker's, and talks to a real TCP
service through the proxy; any leftover of the fault fails it.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from reliability import Pipeline, Retry, StepContext, StepHook
from reliability.chaos.controller import inject
from reliability.chaos.faults import (
    CORRUPTIONS,
    TOXICS,
    DataFault,
    DiskQuota,
    ExceptionFault,
    FaultBase,
    Hang,
    KillWorker,
    Latency,
    MemoryLimit,
    NetworkFault,
)
from reliability.chaos.leases import ProxyApi
from reliability.chaos.proxy import ProxyServer
from reliability.pipeline import StepSpec
from reliability.runner import Runner

pytestmark = pytest.mark.integration

NET: dict[str, str] = {}  # proxy API url and listen address; set before runs, workers inherit
AT_START: dict[str, dict[str, Any]] = {}  # step -> worker state as its attempt began

iso = Pipeline("fault_isolation")
AGAIN = Retry(attempts=2, backoff=0)


def _worker_state() -> dict[str, Any]:
    return {
        "as": resource.getrlimit(resource.RLIMIT_AS),
        "fsize": resource.getrlimit(resource.RLIMIT_FSIZE),
        "sigxfsz": signal.getsignal(signal.SIGXFSZ),
        "threads": threading.active_count(),
    }


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"id": range(20), "amount": [float(i) for i in range(20)],
                         "label": [f"l{i}" for i in range(20)],
                         "day": pd.date_range("2026-01-01", periods=20, freq="D")})


def _ping(timeout: float = 2.0) -> bytes:
    host, port = NET["listen"].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as conn:
        conn.settimeout(timeout)
        conn.sendall(b"ping\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = conn.recv(64)
            if not chunk:
                break
            data += chunk
    return data


@iso.step(timeout=30)
def state() -> dict[str, Any]:
    return _worker_state()


@iso.step(timeout=30)
def frame() -> pd.DataFrame:
    return _frame()


@iso.step(timeout=30)
def big() -> bytes:
    return os.urandom(16 * 1024 * 1024)


@iso.step(retry=AGAIN, timeout=2)
def faulted(frame: pd.DataFrame) -> int:
    time.sleep(0.3)  # long enough for delayed faults to land inside the attempt
    return len(frame)


@iso.step(after=("faulted",), timeout=30)
def probe(ctx: StepContext, state: dict[str, Any], frame: pd.DataFrame, big: bytes
          ) -> dict[str, Any]:
    for when, now in (("when the attempt started", AT_START["probe"]),
                      ("in the body", _worker_state())):
        assert now == state, f"a fault outlived its attempt: clean {state}, {when} {now}"
    pd.testing.assert_frame_equal(frame, _frame())
    assert len(big) == 16 * 1024 * 1024
    ballast = bytearray(64 * 1024 * 1024)
    (ctx.staging_dir / "scratch.bin").write_bytes(bytes(2 * 1024 * 1024))
    out: dict[str, Any] = {"ballast": len(ballast)}
    if NET:
        assert ProxyApi(NET["api"]).toxics("svc") == [], "a toxic outlived its attempt"
        out["echo"] = _ping().decode()
        assert out["echo"] == "ping\n"
    return out


class StartState(StepHook):
    """Records the worker's state as each attempt begins, before its inputs are read."""

    def attempt(self, ctx: StepContext, spec: StepSpec) -> AbstractContextManager[None]:
        AT_START[spec.name] = _worker_state()
        return nullcontext()


class _Echo(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(line)


@pytest.fixture(scope="module")
def network() -> Iterator[str]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with ProxyServer(port=0) as proxy:
            api = ProxyApi(proxy.url)
            NET["listen"] = api.create_proxy("svc", f"127.0.0.1:{server.server_address[1]}")
            NET["api"] = proxy.url
            try:
                yield proxy.url
            finally:
                NET.clear()
    finally:
        server.shutdown()
        server.server_close()


_ATTRS: dict[str, dict[str, int]] = {
    "latency": {"latency": 5000}, "bandwidth": {"rate": 0}, "timeout": {"timeout": 0},
    "reset_peer": {"timeout": 0}, "slow_close": {"delay": 5000},
    "slicer": {"average_size": 1, "size_variation": 0, "delay": 100000},
    "limit_data": {"bytes": 1}, "down": {},
}

CASES: dict[str, FaultBase] = {
    "exception": ExceptionFault(step="faulted", error="ConnectionError"),
    "exception-after": ExceptionFault(step="faulted", when="after", after=0.05),
    "latency": Latency(step="faulted", seconds=0.2),
    "hang": Hang(step="faulted"),
    "kill_worker": KillWorker(step="faulted", after=0.05),
    "disk_quota": DiskQuota(step="faulted", bytes=1024),
    "memory_limit": MemoryLimit(step="faulted", headroom_mb=4),
    "data-output": DataFault(step="faulted", target="output", corruption="empty"),
    **{f"data-input-{c}": DataFault(step="faulted", target="input", corruption=c,
                                    columns=["amount"] if c in ("nulls", "out_of_range",
                                                                "drop_column",
                                                                "rename_column",
                                                                "dtype_flip") else [])
       for c in CORRUPTIONS},
}
NETWORK: dict[str, FaultBase] = {
    **{f"network-{t}": NetworkFault(step="faulted", proxy="svc", toxic=t,  # type: ignore[arg-type]
                                    attributes=_ATTRS[t]) for t in TOXICS},
    "network-delayed": NetworkFault(step="faulted", proxy="svc", toxic="down", after=0.01),
}


def _run(tmp_path: Path, fault: FaultBase, api: str | None) -> None:
    named = fault.model_copy(update={"name": "f"})
    runner = Runner(iso, home=tmp_path, workers=1, hooks=[StartState()])
    try:
        with inject(runner, named, seed=3, proxy_api=api) as ctl:
            result = runner.run(resume=False)
        assert not ctl.errors
        assert result.ok, (result.failed, runner.ledger.attempts(result.run_id))
        injected = runner.ledger.events(result.run_id, "fault_injected")
        assert [(e["step"], e["attempt"]) for e in injected] == [("faulted", 1)], injected
        attempts = runner.ledger.attempts(result.run_id)
        pids = {a["step"]: a["worker_pid"] for a in attempts if a["status"] == "succeeded"}
        if fault.type not in ("hang", "kill_worker"):  # type: ignore[attr-defined]
            assert pids["probe"] == pids["state"], "probe ran on another worker"
    finally:
        runner.close()
        runner.ledger.close()


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_next_step_on_the_worker_runs_clean(tmp_path: Path, case: str) -> None:
    _run(tmp_path, CASES[case], None)


@pytest.mark.parametrize("case", sorted(NETWORK))
def test_the_next_step_runs_clean_after_a_network_fault(tmp_path: Path, network: str,
                                                        case: str) -> None:
    _run(tmp_path, NETWORK[case], network)
    assert ProxyApi(network).toxics("svc") == []
    assert ProxyApi(network).proxies()["svc"]["enabled"]


net = Pipeline("fault_duration")


@net.step(retry=Retry(attempts=12, backoff=0.3, multiplier=1.0, jitter=0.0), timeout=10)
def fetch() -> str:
    return _ping(timeout=1.0).decode()


def _attempts_under(tmp_path: Path, api: str, fault: NetworkFault
                    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    runner = Runner(net, home=tmp_path, workers=1)
    try:
        with inject(runner, fault, seed=1, proxy_api=api) as ctl:
            result = runner.run(resume=False)
        assert not ctl.errors
        assert result.ok, result.failed
        assert ProxyApi(api).proxies()["svc"]["enabled"]
        assert ProxyApi(api).toxics("svc") == []
        return (runner.ledger.attempts(result.run_id, "fetch"),
                runner.ledger.events(result.run_id, "fault_injected"))
    finally:
        runner.close()
        runner.ledger.close()


@pytest.mark.parametrize("toxic", ["down", "reset_peer"])
def test_a_network_fault_with_a_duration_lasts_it_across_attempts(
        tmp_path: Path, network: str, toxic: str) -> None:
    fault = NetworkFault(name="outage", step="fetch", proxy="svc", toxic=toxic,
                         duration=1.5, attributes=_ATTRS[toxic])
    attempts, injected = _attempts_under(tmp_path, network, fault)
    statuses = [a["status"] for a in attempts]
    assert statuses[-1] == "succeeded" and set(statuses[:-1]) == {"failed"}
    assert len(attempts) >= 3, statuses  # retries 0.3 s apart kept failing for 1.5 s
    assert attempts[1]["started_at"] >= attempts[0]["ended_at"]  # it outlived attempt 1
    assert attempts[-1]["ended_at"] >= injected[0]["time"] + 1.5
    assert [(e["attempt"], e["details"]["duration"]) for e in injected] == [(1, 1.5)]


def test_an_attempt_a_lasting_fault_fires_on_again_does_not_restart_it(
        tmp_path: Path, network: str) -> None:
    fault = NetworkFault(name="outage", step="fetch", proxy="svc", toxic="down",
                         duration=1.0, attempts=[1, 2, 3])
    attempts, injected = _attempts_under(tmp_path, network, fault)
    assert [e["attempt"] for e in injected] == [1]  # 2 and 3 found it still in effect
    assert attempts[-1]["ended_at"] >= injected[0]["time"] + 1.0


def test_without_a_duration_a_network_fault_lasts_its_attempt(tmp_path: Path, network: str
                                                               ) -> None:
    fault = NetworkFault(name="outage", step="fetch", proxy="svc", toxic="down")
    attempts, injected = _attempts_under(tmp_path, network, fault)
    assert [a["status"] for a in attempts] == ["failed", "succeeded"]
    assert [e["attempt"] for e in injected] == [1]
