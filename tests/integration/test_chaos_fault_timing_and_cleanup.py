"""Chaos faults in time and in cleanup: a delayed toxic stays in its step, stop waits for a
toxic being added, a failed rollback keeps its lease, forks never deadlock on the API lock."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from reliability import Pipeline, Retry, StepContext
from reliability.chaos.controller import Controller, inject
from reliability.chaos.faults import NetworkFault
from reliability.chaos.leases import LeaseStore, ProxyApi, reap_leases
from reliability.chaos.proxy import ProxyServer
from reliability.chaos.runner import lease_store, run_experiment
from reliability.chaos.target import TargetProcess
from reliability.errors import ChaosError
from reliability.runner import Runner

pytestmark = pytest.mark.integration

API: dict[str, str] = {}  # set before a run; forked workers inherit it

two = Pipeline("timing_two")


@two.step(retry=Retry(attempts=1), timeout=20)
def a() -> int:
    return 1


@two.step(retry=Retry(attempts=1), timeout=20)
def b(a: int) -> int:
    time.sleep(1.0)
    toxics = ProxyApi(API["url"]).toxics("svc")
    if toxics:
        raise RuntimeError(f"step b ran with toxics of step a: {toxics}")
    return a + 1


def test_a_delayed_step_toxic_never_reaches_the_next_step(tmp_path: Path) -> None:
    with ProxyServer(port=0) as server:
        api = ProxyApi(server.url)
        api.create_proxy("svc", "127.0.0.1:9")
        API["url"] = server.url
        runner = Runner(two, home=tmp_path, workers=1)
        try:
            fault = NetworkFault(name="lat", step="a", proxy="svc", toxic="latency",
                                 after=0.3, attributes={"latency": 5})
            with inject(runner, fault, proxy_api=server.url) as ctl:
                result = runner.run()
                assert api.toxics("svc") == []  # not even left for stop() to find
            assert result.status == "succeeded", result.failed
            assert not ctl.errors
            assert api.toxics("svc") == []
        finally:
            runner.close()


def test_stop_waits_for_a_toxic_being_added_and_undoes_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_add = ProxyApi.add_toxic
    started = threading.Event()

    def slow_add(self: ProxyApi, *args: Any, **kw: Any) -> None:
        started.set()
        time.sleep(0.5)  # the API call is in flight while stop() runs
        real_add(self, *args, **kw)

    monkeypatch.setattr(ProxyApi, "add_toxic", slow_add)
    with ProxyServer(port=0) as server:
        api = ProxyApi(server.url)
        api.create_proxy("svc", "127.0.0.1:9")
        store = LeaseStore(tmp_path / "state.db")
        ctl = Controller([NetworkFault(name="lag", proxy="svc", toxic="latency", after=0.05,
                                       attributes={"latency": 5})],
                         proxy_api=server.url, leases=store)
        ctl.start_method()
        assert started.wait(5)
        rolled = ctl.stop()
        time.sleep(0.8)  # long enough for an add that stop() did not wait for to land
        assert api.toxics("svc") == []
        assert [r["toxic"] for r in rolled if r["ok"]] == ["chaos-adhoc-lag"]
        assert store.list() == []
        store.close()


def test_a_rollback_that_fails_keeps_its_lease_for_cleanup(tmp_path: Path) -> None:
    with TargetProcess() as target:
        assert target.api_url is not None
        ProxyApi(target.api_url).create_proxy("svc", "127.0.0.1:9")
        spec: dict[str, Any] = {
            "title": "the proxy server dies mid-method",
            "target": {"mode": "external", "proxy_api": target.api_url, "duration": 1.5},
            "method": [{"type": "network", "name": "lag", "proxy": "svc",
                        "toxic": "latency", "attributes": {"latency": 5}}],
            "blast_radius": {"proxies": ["svc"]},
        }
        api = ProxyApi(target.api_url)

        def kill_once_applied() -> None:
            deadline = time.monotonic() + 10
            while not api.toxics("svc") and time.monotonic() < deadline:
                time.sleep(0.02)
            target._proc.kill()

        killer = threading.Thread(target=kill_once_applied)
        killer.start()
        try:
            journal = run_experiment(spec, pipeline=two, home=tmp_path)
        finally:
            killer.join()
    undo = [r for r in journal.data["rollbacks"] if r["action"] == "undo toxic"]
    assert undo and not any(r["ok"] for r in undo)
    store = lease_store(tmp_path)
    kept = store.list()
    assert [(lease.kind, lease.proxy) for lease in kept] == [("toxic", "svc")]
    assert [outcome.split(":")[0] for _, outcome in reap_leases(store, everything=True)
            ] == ["unreachable"]  # still there for a later cleanup
    assert len(store.list()) == 1
    store.close()


def test_a_fault_on_an_unknown_proxy_is_refused_before_the_method(tmp_path: Path) -> None:
    with ProxyServer(port=0) as server:
        ProxyApi(server.url).create_proxy("svc", "127.0.0.1:9")
        runner = Runner(two, home=tmp_path, workers=1)
        try:
            fault = NetworkFault(name="n", proxy="nosuch", toxic="latency", after=0.05)
            with pytest.raises(ChaosError, match="'nosuch' does not exist"), \
                    inject(runner, fault, proxy_api=server.url):
                pass
        finally:
            runner.close()


gone = Pipeline("timing_gone")


@gone.step(retry=Retry(attempts=1), timeout=20)
def cut(ctx: StepContext) -> int:
    if not ctx.run_id.endswith("-baseline"):
        ProxyApi(API["url"]).delete_proxy("svc")  # before the delayed fault fires
    time.sleep(0.8)
    return 1


def test_a_delayed_fault_that_fails_fails_the_experiment(tmp_path: Path) -> None:
    with ProxyServer(port=0) as server:
        API["url"] = server.url
        spec: dict[str, Any] = {
            "title": "the proxy vanishes before the fault",
            "target": {"proxy_api": server.url,
                       "services": [{"name": "svc", "upstream": "127.0.0.1:9"}]},
            "method": [{"type": "network", "name": "late", "proxy": "svc",
                        "toxic": "latency", "after": 0.3, "attributes": {"latency": 5}}],
        }
        journal = run_experiment(spec, pipeline=gone, home=tmp_path)
    assert journal.status == "failed"
    assert "network fault 'late' on proxy 'svc' was not applied" in journal.data["error"]


quick = Pipeline("timing_quick")


@quick.step(retry=Retry(attempts=1), timeout=2)
def hurry() -> int:
    return 1


def test_a_worker_forked_while_the_api_lock_is_held_does_not_deadlock(
        tmp_path: Path) -> None:
    with ProxyServer(port=0) as server:
        api = ProxyApi(server.url)
        api.create_proxy("svc", "127.0.0.1:9")
        # a slow API behind a proxy: a call through it holds the lock for ~2.5 s, as the
        # sweeper does when the proxy server is slow
        slow = api.create_proxy("slowapi", f"127.0.0.1:{server.port}")
        api.add_toxic("slowapi", "lag", "latency", attributes={"latency": 2500})
        API["url"] = server.url
        runner = Runner(quick, home=tmp_path, workers=1)
        try:
            fault = NetworkFault(name="now", step="hurry", proxy="svc", toxic="latency",
                                 attributes={"latency": 1})
            with inject(runner, fault, proxy_api=server.url) as ctl:
                holder = threading.Thread(target=ProxyApi(f"http://{slow}").proxies)
                holder.start()
                time.sleep(0.3)
                result = runner.run()
                holder.join()
            assert result.status == "succeeded", result.failed
            injected = runner.ledger.events(result.run_id, "fault_injected")
            assert [e["details"]["toxic"] for e in injected] == ["latency"]
            assert api.toxics("svc") == []  # undone by the worker when its attempt ended
            assert not ctl.rollbacks and not ctl.errors
        finally:
            runner.close()


def _delayed_connections(seed: int, n: int = 8) -> list[bool]:
    """Which of ``n`` connections through a toxicity-0.5 latency toxic were delayed."""
    import selectors
    import socket
    import socketserver

    class Echo(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            while data := self.request.recv(64):
                self.request.sendall(data)

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo) as echo, \
            ProxyServer(port=0, seed=seed) as server:
        echo.daemon_threads = True
        threading.Thread(target=echo.serve_forever, daemon=True).start()
        api = ProxyApi(server.url)
        listen = api.create_proxy("svc", f"127.0.0.1:{echo.server_address[1]}")
        api.add_toxic("svc", "lag", "latency", toxicity=0.5, attributes={"latency": 300})
        host, port = listen.rsplit(":", 1)
        socks = []
        try:
            for _ in range(n):  # one at a time, so the server rolls in this order
                s = socket.create_connection((host, int(port)), timeout=5)
                socks.append(s)
                time.sleep(0.03)
            t0 = time.monotonic()
            for s in socks:
                s.sendall(b"x")
            arrived: dict[int, float] = {}
            with selectors.DefaultSelector() as sel:
                for i, s in enumerate(socks):
                    sel.register(s, selectors.EVENT_READ, i)
                while len(arrived) < n and time.monotonic() - t0 < 5:
                    for key, _ in sel.select(timeout=1):
                        assert key.fileobj.recv(1) == b"x"  # type: ignore[union-attr]
                        arrived[key.data] = time.monotonic() - t0
                        sel.unregister(key.fileobj)
            delayed = [arrived[i] > 0.15 for i in range(n)]
        finally:
            for s in socks:
                s.close()
            echo.shutdown()
    return delayed


def test_a_seeded_proxy_server_rolls_toxicity_the_same_way() -> None:
    first = _delayed_connections(seed=11)
    assert first == _delayed_connections(seed=11)
    assert 0 < sum(first) < len(first)  # toxicity 0.5 really picks some connections
