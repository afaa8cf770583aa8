"""Integration tests: real sockets through the embedded Toxiproxy server.

Every test drives the server with the unchanged ``toxiproxy-python`` client and
pushes traffic from a plain socket client through a proxy to a threaded echo
(or HTTP) upstream on 127.0.0.1, checking each toxic's observable effect.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import toxiproxy
from helpers_net import EchoServer

from reliability.chaos.proxy import ProxyServer

pytestmark = pytest.mark.integration

PING = b"ping"


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def server() -> Iterator[ProxyServer]:
    with ProxyServer(port=0) as running:
        yield running


@pytest.fixture
def client(server: ProxyServer) -> toxiproxy.Toxiproxy:
    return server.client()


@pytest.fixture
def proxy(client: toxiproxy.Toxiproxy, echo: EchoServer) -> Any:
    return client.create(upstream=echo.address, name="echo")


def _addr(listen: str) -> tuple[str, int]:
    host, port = listen.rsplit(":", 1)
    return host, int(port)


def _connect(proxy: Any, timeout: float = 5.0) -> socket.socket:
    conn = socket.create_connection(_addr(proxy.listen), timeout=timeout)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def _recv_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _recv_all(conn: socket.socket) -> tuple[bytes, int]:
    """Read to EOF; return the bytes and how many recv calls returned data."""
    data, reads = b"", 0
    while chunk := conn.recv(65536):
        data += chunk
        reads += 1
    return data, reads


def _rtt(conn: socket.socket) -> float:
    start = time.perf_counter()
    conn.sendall(PING)
    assert _recv_exactly(conn, len(PING)) == PING
    return time.perf_counter() - start


def _median_rtt(conn: socket.socket, count: int = 7) -> float:
    return statistics.median(_rtt(conn) for _ in range(count))


# -- plain proxying -------------------------------------------------------------------------


def test_bytes_pass_unchanged_both_ways(proxy: Any) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 17)
    with _connect(proxy) as conn:
        sender = threading.Thread(target=conn.sendall, args=(payload,))
        sender.start()
        received = _recv_exactly(conn, len(payload))
        sender.join()
    assert received == payload


def test_many_concurrent_connections(proxy: Any) -> None:
    results: list[bool] = []

    def talk(index: int) -> None:
        message = f"client-{index}-".encode() * 1000
        with _connect(proxy) as conn:
            conn.sendall(message)
            results.append(_recv_exactly(conn, len(message)) == message)

    threads = [threading.Thread(target=talk, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == [True] * 20


def test_http_upstream_through_latency(client: toxiproxy.Toxiproxy) -> None:
    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"hello through the proxy"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    thread = threading.Thread(target=upstream.serve_forever, daemon=True)
    thread.start()
    try:
        web = client.create(upstream=f"127.0.0.1:{upstream.server_address[1]}", name="web")
        web.add_toxic(type="latency", attributes={"latency": 100})
        start = time.perf_counter()
        with requests.Session() as session:
            response = session.get(f"http://{web.listen}/", timeout=5)
        assert response.text == "hello through the proxy"
        assert time.perf_counter() - start >= 0.1
    finally:
        upstream.shutdown()
        upstream.server_close()
        thread.join(5)


# -- toxics -----------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", ["downstream", "upstream"])
def test_latency_toxic_delays_round_trips(proxy: Any, stream: str) -> None:
    with _connect(proxy) as conn:
        baseline = _median_rtt(conn)
        proxy.add_toxic(type="latency", stream=stream, attributes={"latency": 100})
        delayed = _median_rtt(conn)
    assert abs((delayed - baseline) - 0.100) <= 0.010, (baseline, delayed)


def test_toxics_apply_to_an_open_connection_and_can_be_removed(proxy: Any) -> None:
    with _connect(proxy) as conn:
        assert _rtt(conn) < 0.05
        proxy.add_toxic(type="latency", name="lag", attributes={"latency": 80})
        assert _median_rtt(conn, 3) >= 0.07
        proxy.destroy_toxic("lag")
        assert _median_rtt(conn, 3) < 0.03
        payload = os.urandom(200_000)
        conn.sendall(payload)
        assert _recv_exactly(conn, len(payload)) == payload


def test_toxic_update_takes_effect_on_live_connections(server: ProxyServer, proxy: Any) -> None:
    with _connect(proxy) as conn:
        proxy.add_toxic(type="latency", attributes={"latency": 30})
        first = _median_rtt(conn, 3)
        url = f"{server.url}/proxies/echo/toxics/latency_downstream"
        reply = requests.post(url, json={"attributes": {"latency": 120}}, timeout=5)
        assert reply.json()["attributes"]["latency"] == 120
        second = _median_rtt(conn, 3)
    assert 0.02 <= first < 0.06
    assert 0.11 <= second < 0.16


def test_toxicity_zero_never_applies(proxy: Any) -> None:
    proxy.add_toxic(type="latency", toxicity=0.0, attributes={"latency": 300})
    with _connect(proxy) as conn:
        assert _median_rtt(conn, 3) < 0.1


def test_reset_peer_resets_the_client(proxy: Any) -> None:
    proxy.add_toxic(type="reset_peer", attributes={"timeout": 100})
    with _connect(proxy) as conn:
        start = time.perf_counter()
        conn.sendall(PING)
        with pytest.raises(ConnectionResetError):
            conn.recv(64)  # the toxic swallowed the echo and answered with RST
    assert time.perf_counter() - start >= 0.09


def test_timeout_toxic_stalls_then_closes(proxy: Any) -> None:
    proxy.add_toxic(type="timeout", attributes={"timeout": 300})
    with _connect(proxy) as conn:
        start = time.perf_counter()
        conn.sendall(PING)
        data, _ = _recv_all(conn)
        elapsed = time.perf_counter() - start
    assert data == b""
    assert 0.28 <= elapsed < 1.0


def test_timeout_zero_holds_the_connection_until_removed(proxy: Any) -> None:
    proxy.add_toxic(type="timeout", attributes={"timeout": 0})
    with _connect(proxy, timeout=0.5) as conn:
        conn.sendall(PING)
        with pytest.raises(TimeoutError):
            conn.recv(64)  # nothing forwarded, connection still open
        conn.settimeout(5)
        proxy.destroy_toxic("timeout_downstream")
        assert conn.recv(64) == b""  # Toxiproxy closes streams a timeout toxic ate data from


def test_limit_data_closes_after_n_bytes(proxy: Any) -> None:
    proxy.add_toxic(type="limit_data", attributes={"bytes": 100})
    payload = os.urandom(1000)
    with _connect(proxy) as conn:
        conn.sendall(payload)
        data, _ = _recv_all(conn)
    assert data == payload[:100]


def test_bandwidth_limits_the_rate(proxy: Any) -> None:
    proxy.add_toxic(type="bandwidth", attributes={"rate": 200})  # 200 KB/s
    payload = os.urandom(100_000)
    with _connect(proxy) as conn:
        start = time.perf_counter()
        conn.sendall(payload)
        received = _recv_exactly(conn, len(payload))
        elapsed = time.perf_counter() - start
    assert received == payload
    assert 0.45 <= elapsed <= 0.8, elapsed


def test_slicer_delivers_every_byte_in_pieces(proxy: Any) -> None:
    proxy.add_toxic(type="slicer",
                    attributes={"average_size": 50, "size_variation": 20, "delay": 2000})
    payload = os.urandom(2000)
    with _connect(proxy) as conn:
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        data, reads = _recv_all(conn)
    assert data == payload
    assert reads >= 10


def test_slow_close_delays_the_close(proxy: Any) -> None:
    proxy.add_toxic(type="slow_close", attributes={"delay": 300})
    with _connect(proxy) as conn:
        conn.sendall(PING)
        assert _recv_exactly(conn, len(PING)) == PING
        start = time.perf_counter()
        conn.shutdown(socket.SHUT_WR)
        assert conn.recv(64) == b""
    assert time.perf_counter() - start >= 0.29


def test_upstream_limit_data_cuts_what_the_server_receives(proxy: Any, echo: EchoServer) -> None:
    proxy.add_toxic(type="limit_data", stream="upstream", attributes={"bytes": 4})
    with _connect(proxy) as conn:
        conn.sendall(b"abcdefgh")
        data, _ = _recv_all(conn)  # the whole connection closes once the limit is hit
    deadline = time.monotonic() + 5
    while not echo.received and time.monotonic() < deadline:
        time.sleep(0.01)
    assert echo.received == [b"abcd"]
    assert data in (b"", b"abcd")


# -- proxy state --------------------------------------------------------------------------------


def test_disabled_proxy_drops_connections_and_refuses_new_ones(proxy: Any) -> None:
    conn = _connect(proxy)
    with conn:
        assert _rtt(conn) < 0.05
        with proxy.down():
            with contextlib.suppress(ConnectionResetError):
                assert conn.recv(64) == b""
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(_addr(proxy.listen), timeout=2).close()
    with _connect(proxy) as again:  # re-enabled on the same port
        assert _rtt(again) < 0.05


def test_deleting_a_proxy_closes_its_connections(proxy: Any) -> None:
    with _connect(proxy) as conn:
        assert _rtt(conn) < 0.05
        proxy.destroy()
        assert conn.recv(64) == b""


def test_reset_restores_proxies_and_removes_toxics(client: toxiproxy.Toxiproxy, proxy: Any) -> None:
    proxy.add_toxic(type="timeout", attributes={"timeout": 0})
    proxy.disable()
    client.reset()
    with _connect(proxy) as conn:
        assert _rtt(conn) < 0.05


def test_cli_serve_with_config_until_sigterm(tmp_path: Path, echo: EchoServer) -> None:
    config = tmp_path / "toxiproxy.json"
    config.write_text(json.dumps([{"name": "echo", "listen": "127.0.0.1:0",
                                   "upstream": echo.address}]))
    code = ("import sys; from reliability.cli.proxy import serve; import argparse; "
            "sys.exit(serve(argparse.Namespace(host='127.0.0.1', port=0, config=sys.argv[1])))")
    process = subprocess.Popen([sys.executable, "-c", code, str(config)],
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        banner = process.stderr.readline()
        url = banner.split(" on ")[1].split(" ")[0]
        proxies = requests.get(url + "/proxies", timeout=5).json()
        with socket.create_connection(_addr(proxies["echo"]["listen"]), timeout=5) as conn:
            conn.sendall(PING)
            assert _recv_exactly(conn, len(PING)) == PING
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
