"""Bad requests to the embedded Toxiproxy API get Toxiproxy's answer; the server stays up.

Each test is one reproducer: the request that used to end in a 500 with Python's message,
no response at all, or a toxic that later dropped connections on the data path.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from helpers_net import EchoServer, exchange

from reliability.chaos.proxy import ProxyServer

UPSTREAM = "127.0.0.1:9"


@pytest.fixture(scope="module")
def server() -> Iterator[ProxyServer]:
    with ProxyServer(port=0) as running:
        yield running


@pytest.fixture
def proxy(server: ProxyServer) -> Iterator[str]:
    body = {"name": "bad", "listen": "127.0.0.1:0", "upstream": UPSTREAM}
    assert requests.post(server.url + "/proxies", json=body, timeout=5).status_code == 201
    yield "bad"
    requests.delete(server.url + "/proxies/bad", timeout=5)


def _raw(server: ProxyServer, data: bytes) -> bytes:
    return exchange(server.host, server.port, data)


def _still_serves(server: ProxyServer) -> None:
    assert requests.get(server.url + "/version", timeout=5).status_code == 200


@pytest.mark.parametrize("path", ["/proxies", "/populate", "/proxies/bad",
                                  "/proxies/bad/toxics"])
def test_deeply_nested_json_is_a_400_not_a_python_recursion_error(
    server: ProxyServer, proxy: str, path: str,
) -> None:
    for opener, closer in (("[", "]"), ('{"a":', "}")):
        body = opener * 20000 + closer * 20000
        response = requests.post(server.url + path, data=body, timeout=5)
        assert response.status_code == 400, response.text
        answer = response.json()
        assert (answer["error"], answer["status"]) == ("bad request body: exceeded max depth",
                                                       400)
        assert "recursion" not in response.text
    _still_serves(server)


def test_negative_chunk_size_gets_a_400_and_logs_no_unhandled_exception(
    server: ProxyServer, caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG):
        raw = _raw(server, b"POST /proxies HTTP/1.1\r\nHost: x\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n-1\r\nab\r\n0\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 400 "), raw
    assert b"chunk" in raw.split(b"\r\n\r\n", 1)[1]
    assert "Unhandled exception" not in caplog.text
    assert "Traceback" not in caplog.text
    _still_serves(server)


@pytest.mark.parametrize("size", [b"-1", b"+5", b"0x5", b"1_0", b"9" * 40, b""])
def test_every_malformed_chunk_size_gets_a_400(server: ProxyServer, size: bytes) -> None:
    raw = _raw(server, b"POST /proxies HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                       + size + b"\r\n{}\r\n0\r\n\r\n")
    assert raw.split(b"\r\n", 1)[0] in (b"HTTP/1.1 400 Bad Request",
                                        b"HTTP/1.1 413 Request Entity Too Large"), raw


def test_attribute_beyond_int64_is_refused_like_toxiproxy(server: ProxyServer,
                                                          proxy: str) -> None:
    body = '{"type": "latency", "attributes": {"latency": 1' + "0" * 400 + "}}"
    response = requests.post(f"{server.url}/proxies/{proxy}/toxics", data=body, timeout=5)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith("bad request body: json: cannot unmarshal number 1000")
    assert "of type int64" in error
    assert len(error) < 200  # the 401-digit value is cut, not echoed
    assert requests.get(f"{server.url}/proxies/{proxy}/toxics", timeout=5).json() == []
    for value in (2**63, -(2**63) - 1, 1.5, 100.0, "100", True, [1], {"a": 1}):
        response = requests.post(f"{server.url}/proxies/{proxy}/toxics",
                                 json={"type": "latency", "attributes": {"latency": value}},
                                 timeout=5)
        assert response.status_code == 400, (value, response.text)


def test_largest_int64_attributes_keep_the_data_path_up(server: ProxyServer) -> None:
    """Toxics at int64's edges never raise on the data path (no OverflowError, no drop)."""
    with socket.create_server(("127.0.0.1", 0)) as upstream:
        body = {"name": "huge", "listen": "127.0.0.1:0",
                "upstream": f"127.0.0.1:{upstream.getsockname()[1]}"}
        created = requests.post(server.url + "/proxies", json=body, timeout=5).json()
        try:
            big = 2**63 - 1
            for toxic in ({"type": "latency", "attributes": {"latency": 0, "jitter": big}},
                          {"type": "bandwidth", "attributes": {"rate": big}},
                          {"type": "slicer", "stream": "upstream",
                           "attributes": {"average_size": big, "size_variation": big,
                                          "delay": 0}}):
                answer = requests.post(server.url + "/proxies/huge/toxics", json=toxic,
                                       timeout=5)
                assert answer.status_code == 200, answer.text
            host, port = created["listen"].rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=5) as client:
                peer, _ = upstream.accept()
                with peer:
                    client.sendall(b"ping")
                    assert peer.recv(16) == b"ping"  # slicer + bandwidth pass it on
                    requests.delete(server.url + "/proxies/huge/toxics/latency_downstream",
                                    timeout=5)
                    peer.sendall(b"pong")
                    client.settimeout(5)
                    assert client.recv(16) == b"pong"
        finally:
            requests.delete(server.url + "/proxies/huge", timeout=5)
    _still_serves(server)


@pytest.mark.parametrize("toxicity", [-5, -0.001, 1.001, 1e308, "0.5", True, [0.5]])
def test_toxicity_outside_zero_to_one_is_a_400(server: ProxyServer, proxy: str,
                                               toxicity: Any) -> None:
    url = f"{server.url}/proxies/{proxy}/toxics"
    response = requests.post(url, json={"type": "timeout", "toxicity": toxicity}, timeout=5)
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith("bad request body: ")
    assert requests.get(url, timeout=5).json() == []
    assert requests.post(url, json={"type": "timeout"}, timeout=5).status_code == 200
    update = requests.post(url + "/timeout_downstream", json={"toxicity": toxicity}, timeout=5)
    assert update.status_code == 400
    assert requests.get(url + "/timeout_downstream", timeout=5).json()["toxicity"] == 1


def test_nan_and_infinity_are_not_json(server: ProxyServer, proxy: str) -> None:
    url = f"{server.url}/proxies/{proxy}/toxics"
    for literal in ("NaN", "Infinity", "-Infinity"):
        body = f'{{"type": "timeout", "toxicity": {literal}}}'
        response = requests.post(url, data=body, timeout=5)
        assert response.status_code == 400, response.text
        assert "invalid character" in response.json()["error"]


def test_a_stalled_request_does_not_block_others(server: ProxyServer) -> None:
    with socket.create_connection((server.host, server.port), timeout=5) as stalled:
        stalled.sendall(b"POST /proxies HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
        started = time.monotonic()
        _still_serves(server)
        assert time.monotonic() - started < 2


def test_cli_config_with_deep_nesting_or_duplicate_keys_exits_2_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    from reliability.cli.proxy import serve

    cases = {"deep.json": "[" * 50_000 + "]" * 50_000,
             "dup.json": '[{"name": "a", "upstream": "127.0.0.1:1", "name": "b"}]',
             "nan.json": '[{"name": "a", "upstream": "127.0.0.1:1", "x": NaN}]',
             "null.json": "null"}
    for file_name, text in cases.items():
        path = tmp_path / file_name
        path.write_text(text)
        args = argparse.Namespace(host="127.0.0.1", port=0, config=str(path))
        assert serve(args) == 2
        err = capsys.readouterr().err
        assert str(path) in err and "Fix:" in err, err
        assert "Traceback" not in err and "RecursionError" not in err


def test_one_byte_slices_never_freeze_the_api(server: ProxyServer) -> None:
    """A slicer cutting 1-byte pieces used to copy each remainder and never yield: the
    server froze (API included) for minutes on a 1 MiB transfer."""
    echo = EchoServer()
    body = {"name": "sliced", "listen": "127.0.0.1:0", "upstream": echo.address}
    created = requests.post(server.url + "/proxies", json=body, timeout=5).json()
    try:
        toxic = {"type": "slicer", "stream": "upstream",
                 "attributes": {"average_size": 1, "size_variation": 0, "delay": 0}}
        assert requests.post(server.url + "/proxies/sliced/toxics", json=toxic,
                             timeout=5).status_code == 200
        host, port = created["listen"].rsplit(":", 1)
        data = bytes(range(256)) * 256  # 64 KiB: 65,536 one-byte writes
        with socket.create_connection((host, int(port)), timeout=60) as conn:
            conn.sendall(data)
            slowest = 0.0
            received = b""
            while len(received) < len(data):
                started = time.monotonic()
                _still_serves(server)
                slowest = max(slowest, time.monotonic() - started)
                conn.settimeout(0.05)
                with contextlib.suppress(TimeoutError):
                    while chunk := conn.recv(65536):
                        received += chunk
            assert received == data
        assert slowest < 2.0, f"the API took {slowest:.1f}s to answer during the transfer"
    finally:
        requests.delete(server.url + "/proxies/sliced", timeout=5)
        echo.close()
