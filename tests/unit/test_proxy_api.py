"""Unit tests of the embedded Toxiproxy server: validation, HTTP parsing, API shapes, CLI.

The API tests run one loopback server (free port) and drive it with the
unchanged ``toxiproxy-python`` client and with raw HTTP for status codes and
error bodies.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import toxiproxy
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

from reliability.chaos.proxy import ProxyServer
from reliability.chaos.proxy.config import load_config, validate_proxies
from reliability.chaos.proxy.errors import ApiError, ProxyServerError
from reliability.chaos.proxy.http import Request, Response, read_request
from reliability.chaos.proxy.registry import parse_proxy_list
from reliability.chaos.proxy.toxics import parse_toxic
from reliability.cli.proxy import register, serve
from reliability.errors import ChaosError, ConfigError

UPSTREAM = "127.0.0.1:9"  # never dialled: these tests open no proxied connections


# -- pure validation -----------------------------------------------------------------------


def test_parse_toxic_defaults_name_stream_and_attributes() -> None:
    spec = parse_toxic({"type": "latency", "attributes": {"latency": 100}})
    assert spec.to_json() == {
        "attributes": {"latency": 100, "jitter": 0},
        "name": "latency_downstream",
        "type": "latency",
        "stream": "downstream",
        "toxicity": 1.0,
    }
    upper = parse_toxic({"type": "timeout", "stream": "UPSTREAM"})  # Toxiproxy keeps the case
    assert (upper.name, upper.stream, upper.direction) == (
        "timeout_UPSTREAM", "UPSTREAM", "upstream")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"type": "nope"}, "invalid toxic type"),
        ({"type": "latency", "stream": "sideways"}, "stream was invalid"),
        ({"type": "latency", "attributes": {"latency": "fast"}},
         "cannot unmarshal string into Go struct field LatencyToxic.attributes.latency "
         "of type int64"),
        ({"type": "latency", "attributes": {"latency": 2**63}}, "of type int64"),
        ({"type": "latency", "toxicity": "high"}, "cannot unmarshal string"),
        ({"type": "latency", "toxicity": 2}, "toxicity 2 is not between 0 and 1"),
        ([], "cannot unmarshal array into Go value"),
    ],
)
def test_parse_toxic_rejects_bad_bodies_with_400(body: object, message: str) -> None:
    with pytest.raises(ApiError, match=message) as info:
        parse_toxic(body)
    assert info.value.status == 400
    assert isinstance(info.value, ChaosError)


def test_toxic_update_merges_attributes_and_toxicity() -> None:
    spec = parse_toxic({"type": "slicer", "attributes": {"average_size": 10}})
    updated = spec.updated({"attributes": {"delay": 5}, "toxicity": 0.5})
    assert updated.attributes == {"average_size": 10, "size_variation": 0, "delay": 5}
    assert updated.toxicity == 0.5
    assert updated.name == spec.name


def test_parse_proxy_list_reports_index_and_field() -> None:
    with pytest.raises(ApiError, match="missing required field: upstream at proxy 2"):
        parse_proxy_list([{"name": "a", "upstream": UPSTREAM}, {"name": "b"}])
    with pytest.raises(ApiError, match="duplicate proxy name"):
        parse_proxy_list([{"name": "a", "upstream": UPSTREAM}] * 2)


def test_config_errors_name_file_key_path_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "toxiproxy.json"
    path.write_text(json.dumps([{"name": "redis", "listen": "127.0.0.1:0", "upstream": 6379}]))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert str(path) in text
    assert "[0].upstream" in text
    assert "Fix:" in text

    path.write_text("[{")
    with pytest.raises(ConfigError, match="invalid JSON at line 1"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="must be a JSON list"):
        validate_proxies({"name": "x"})


def test_config_loads_toxiproxy_format(tmp_path: Path) -> None:
    path = tmp_path / "toxiproxy.json"
    path.write_text(json.dumps([
        {"name": "redis", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:6379"},
        {"name": "pg", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:5432", "enabled": False},
    ]))
    proxies = load_config(path)
    assert [(p.name, p.enabled) for p in proxies] == [("redis", True), ("pg", False)]


# -- HTTP core ------------------------------------------------------------------------------


def _parse(raw: bytes) -> Request | None:
    async def run() -> Request | None:
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        return await read_request(reader)

    return asyncio.run(run())


def test_http_parser_reads_content_length_and_chunked_bodies() -> None:
    request = _parse(b"POST /proxies/a%2Fb/toxics HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}")
    assert request is not None
    assert request.segments == ["proxies", "a", "b", "toxics"]  # decoded first, as Go's mux
    assert request.json() == {}
    assert request.keep_alive

    chunked = _parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                     b"3\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n")
    assert chunked is not None
    assert chunked.json() == [1, 2]
    assert not chunked.keep_alive
    assert _parse(b"") is None


def test_http_parser_rejects_garbage() -> None:
    with pytest.raises(ApiError, match="malformed request line"):
        _parse(b"HELLO\r\n\r\n")
    with pytest.raises(ApiError) as info:
        _parse(b"POST / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n")
    assert info.value.status == 413


def test_response_encoding_has_length_and_json() -> None:
    raw = Response(409, {"error": "x", "status": 409}).encode(keep_alive=True)
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 409 Conflict")
    assert f"Content-Length: {len(body)}".encode() in head
    assert json.loads(body) == {"error": "x", "status": 409}


# -- the API, driven by toxiproxy-python ---------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[ProxyServer]:
    with ProxyServer(port=0) as running:
        yield running


@pytest.fixture
def client(server: ProxyServer) -> Iterator[toxiproxy.Toxiproxy]:
    toxi = server.client()
    yield toxi
    for proxy in list(toxi.proxies().values()):
        proxy.destroy()


def _call(server: ProxyServer, method: str, path: str, body: Any = None, **kw: Any) -> Any:
    kwargs: dict[str, Any] = {"timeout": 5, **kw}
    if body is not None:
        kwargs["data"] = body if isinstance(body, str | bytes) else json.dumps(body)
    return requests.request(method, server.url + path, **kwargs)


def test_create_list_and_delete_proxies_with_the_python_client(
    client: toxiproxy.Toxiproxy,
) -> None:
    proxy = client.create(upstream=UPSTREAM, name="db")
    host, port = proxy.listen.rsplit(":", 1)
    assert host == "127.0.0.1"
    assert int(port) > 0  # "127.0.0.1:0" reports the port actually bound
    assert proxy.enabled is True
    assert set(client.proxies()) == {"db"}
    assert client.get_proxy("db").upstream == UPSTREAM
    with pytest.raises(ProxyExists):
        client.create(upstream=UPSTREAM, name="db")
    assert proxy.destroy() is True
    assert client.proxies() == {}
    with pytest.raises(NotFound):
        proxy.destroy()


def test_toxics_crud_with_the_python_client(client: toxiproxy.Toxiproxy) -> None:
    proxy = client.create(upstream=UPSTREAM, name="cache")
    proxy.add_toxic(type="latency", attributes={"latency": 25, "jitter": 5})
    proxy.add_toxic(type="bandwidth", stream="upstream", name="slow", attributes={"rate": 10})
    toxics = proxy.toxics()
    assert set(toxics) == {"latency_downstream", "slow"}
    assert toxics["latency_downstream"].attributes == {"latency": 25, "jitter": 5}
    assert toxics["slow"].stream == "upstream"
    with pytest.raises(ProxyExists):
        proxy.add_toxic(type="latency")
    with pytest.raises(InvalidToxic):
        proxy.add_toxic(type="gremlins")
    assert proxy.destroy_toxic("slow") is True
    assert set(proxy.toxics()) == {"latency_downstream"}
    with pytest.raises(NotFound):
        proxy.destroy_toxic("slow")


def test_error_bodies_match_toxiproxy(server: ProxyServer, client: toxiproxy.Toxiproxy) -> None:
    missing = _call(server, "GET", "/proxies/nope")
    assert missing.status_code == 404
    assert missing.json() == {"error": "proxy not found", "status": 404}

    body = {"name": "api", "listen": "127.0.0.1:0", "upstream": UPSTREAM}
    assert _call(server, "POST", "/proxies", body).status_code == 201
    duplicate = _call(server, "POST", "/proxies", body)
    assert (duplicate.status_code, duplicate.json()) == (
        409, {"error": "proxy already exists", "status": 409})

    bad = _call(server, "POST", "/proxies", "{not json")
    assert bad.status_code == 400
    assert bad.json()["error"].startswith("bad request body")
    no_name = _call(server, "POST", "/proxies", {"upstream": UPSTREAM})
    assert no_name.json() == {"error": "missing required field: name", "status": 400}

    toxic = _call(server, "POST", "/proxies/api/toxics", {"type": "earthquake"})
    assert (toxic.status_code, toxic.json()) == (400, {"error": "invalid toxic type", "status": 400})
    gone = _call(server, "GET", "/proxies/api/toxics/nope")
    assert (gone.status_code, gone.json()) == (404, {"error": "toxic not found", "status": 404})
    assert _call(server, "POST", "/proxies/api/toxics", {"type": "timeout"}).status_code == 200
    again = _call(server, "POST", "/proxies/api/toxics", {"type": "timeout"})
    assert (again.status_code, again.json()) == (409, {"error": "toxic already exists",
                                                        "status": 409})
    assert _call(server, "PUT", "/proxies/api").status_code == 405


def test_proxy_json_shape_update_and_reset(server: ProxyServer, client: toxiproxy.Toxiproxy) -> None:
    body = {"name": "shape", "listen": "127.0.0.1:0", "upstream": UPSTREAM}
    created = _call(server, "POST", "/proxies", body).json()
    assert set(created) == {"name", "listen", "upstream", "enabled", "toxics"}
    assert created["toxics"] == []
    toxic = _call(server, "POST", "/proxies/shape/toxics",
                  {"type": "limit_data", "attributes": {"bytes": 10}, "toxicity": 0.5}).json()
    assert toxic == {"attributes": {"bytes": 10}, "name": "limit_data_downstream",
                     "type": "limit_data", "stream": "downstream", "toxicity": 0.5}
    updated = _call(server, "POST", "/proxies/shape/toxics/limit_data_downstream",
                    {"attributes": {"bytes": 20}}).json()
    assert updated["attributes"] == {"bytes": 20}
    assert updated["toxicity"] == 0.5

    disabled = _call(server, "POST", "/proxies/shape", {"enabled": False}).json()
    assert disabled["enabled"] is False
    assert disabled["listen"] == created["listen"]
    assert _call(server, "POST", "/reset").status_code == 204
    after = _call(server, "GET", "/proxies/shape").json()
    assert after["enabled"] is True
    assert after["toxics"] == []
    assert _call(server, "GET", "/proxies/shape/toxics").json() == []


def test_populate_version_metrics_and_browser_block(
    server: ProxyServer, client: toxiproxy.Toxiproxy,
) -> None:
    entries = [{"name": f"p{i}", "listen": "127.0.0.1:0", "upstream": UPSTREAM} for i in range(2)]
    populated = _call(server, "POST", "/populate", entries)
    assert populated.status_code == 201
    assert [p["name"] for p in populated.json()["proxies"]] == ["p0", "p1"]
    assert set(client.proxies()) == {"p0", "p1"}
    assert _call(server, "POST", "/populate", [{"name": "x"}]).status_code == 400

    assert b"version" in client.version()
    metrics = _call(server, "GET", "/metrics").text
    assert 'toxiproxy_proxy_received_bytes_total{direction="upstream"' in metrics
    browser = _call(server, "GET", "/proxies", headers={"User-Agent": "Mozilla/5.0"})
    assert browser.status_code == 403


def test_keep_alive_serves_several_requests_on_one_connection(server: ProxyServer) -> None:
    with requests.Session() as session:
        for _ in range(3):
            assert session.get(server.url + "/version", timeout=5).status_code == 200


def test_listen_conflict_is_an_api_error(server: ProxyServer, client: toxiproxy.Toxiproxy) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        body = {"name": "clash", "listen": f"127.0.0.1:{taken.getsockname()[1]}",
                "upstream": UPSTREAM}
        response = _call(server, "POST", "/proxies", body)
    assert response.status_code == 500
    assert "address already in use" in response.json()["error"]
    assert "clash" not in client.proxies()


# -- server lifecycle and CLI -----------------------------------------------------------------


def test_server_start_failure_is_a_chaos_error(server: ProxyServer) -> None:
    clash = ProxyServer(port=server.port)
    with pytest.raises(ProxyServerError, match="Fix:"):
        clash.start()
    assert not clash.running


def test_server_lifecycle_is_idempotent_and_restartable() -> None:
    embedded = ProxyServer(port=0, proxies=[{"name": "boot", "upstream": UPSTREAM}])
    with pytest.raises(ProxyServerError, match="not running"):
        embedded.reset()
    with embedded:
        assert [p["name"] for p in embedded.populate([])] == []
        assert requests.get(embedded.url + "/proxies/boot", timeout=5).status_code == 200
    embedded.stop()
    assert not embedded.running


def _cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="reliability")
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_parses_serve_defaults() -> None:
    args = _cli(["proxy", "serve"])
    assert (args.host, args.port, args.config) == ("127.0.0.1", 8474, None)
    assert args.func is serve


def test_cli_bad_config_exits_2_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"name": "redis", "listen": "127.0.0.1:0"}]))
    args = _cli(["proxy", "serve", "--port", "0", "--config", str(path)])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert str(path) in err
    assert "[0].upstream" in err
    assert "Traceback" not in err


def test_importing_chaos_is_cheap() -> None:
    import subprocess
    import sys

    code = ("import sys, reliability.chaos; "
            "print('toxiproxy' in sys.modules, 'reliability.chaos.proxy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
