"""The embedded server answers as Toxiproxy 2.12's API handlers, router and decoder do.

Each test names the Toxiproxy behaviour it matches (api.go, proxy_collection.go,
toxic_collection.go, toxics/*.go, gorilla/mux's router). Clients are the unchanged
``toxiproxy-python`` where it has the call, raw HTTP otherwise.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import toxiproxy
from helpers_net import EchoServer, exchange
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

from reliability.chaos.proxy import VERSION, ProxyServer

UPSTREAM = "127.0.0.1:9"
REQUEST_ID = re.compile(r"^[0-9a-v]{20}$")


@pytest.fixture(scope="module")
def server() -> Iterator[ProxyServer]:
    with ProxyServer(port=0) as running:
        yield running


@pytest.fixture
def client(server: ProxyServer) -> Iterator[toxiproxy.Toxiproxy]:
    """toxiproxy-python pointed at the server; every proxy a test made is gone after it."""
    yield server.client()
    server.client().destroy_all()


def _call(server: ProxyServer, method: str, path: str, body: Any = None,
          **kw: Any) -> requests.Response:
    kwargs: dict[str, Any] = {"timeout": 5, "allow_redirects": False, **kw}
    if body is not None:
        kwargs["data"] = body if isinstance(body, str | bytes) else json.dumps(body)
    return requests.request(method, server.url + path, **kwargs)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    upstream = EchoServer()
    yield upstream
    upstream.close()


def _connect(listen: str) -> socket.socket:
    host, port = listen.rsplit(":", 1)
    conn = socket.create_connection((host, int(port)), timeout=5)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def _read_to_end(conn: socket.socket) -> None:
    while conn.recv(16):
        pass


def _round_trip(conn: socket.socket, data: bytes = b"ping") -> float:
    started = time.perf_counter()
    conn.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = conn.recv(65536)
        assert chunk, "connection closed"
        got += chunk
    assert got == data
    return time.perf_counter() - started


# -- POST /populate (proxy_collection.go: PopulateJson, AddOrReplace, Differs) --------------------


def test_populate_keeps_an_unchanged_proxy_and_its_toxics(
    server: ProxyServer, client: toxiproxy.Toxiproxy, echo: EchoServer,
) -> None:
    port = _free_port()
    kept = client.create(upstream=echo.address, name="one", listen=f"localhost:{port}")
    assert kept.listen == f"127.0.0.1:{port}"  # Toxiproxy binds localhost's IPv4 address
    kept.add_toxic(type="latency", attributes={"latency": 5})
    moved = client.create(upstream=echo.address, name="two")
    conn = _connect(kept.listen)
    try:
        _round_trip(conn)
        answer = _call(server, "POST", "/populate", [
            {"name": "one", "listen": f"localhost:{port}", "upstream": echo.address},
            {"name": "two", "listen": "127.0.0.1:0", "upstream": echo.address},
        ])
        assert answer.status_code == 201
        proxies = answer.json()["proxies"]
        assert [p["name"] for p in proxies] == ["one", "two"]
        assert proxies[0]["listen"] == f"127.0.0.1:{port}"
        assert [t["name"] for t in proxies[0]["toxics"]] == ["latency_downstream"]
        assert proxies[1]["listen"] != moved.listen  # 127.0.0.1:0 differs: replaced
        assert set(client.get_proxy("one").toxics()) == {"latency_downstream"}
        _round_trip(conn)  # the kept proxy's open connection lives on
    finally:
        conn.close()


def test_populate_of_an_unchanged_disabled_proxy_leaves_it_disabled(
    server: ProxyServer, client: toxiproxy.Toxiproxy,
) -> None:
    listen = f"127.0.0.1:{_free_port()}"
    client.create(upstream=UPSTREAM, name="off", listen=listen, enabled=False)
    answer = _call(server, "POST", "/populate",
                   [{"name": "off", "listen": listen, "upstream": UPSTREAM}])
    assert answer.status_code == 201
    assert answer.json()["proxies"][0]["enabled"] is False


def test_populate_answers_with_toxiproxys_shapes(server: ProxyServer,
                                                 client: toxiproxy.Toxiproxy) -> None:
    empty = _call(server, "POST", "/populate", [])
    assert (empty.status_code, empty.text) == (201, '{"proxies":null}')
    assert _call(server, "POST", "/populate", "null").json() == {"proxies": None}

    bad = _call(server, "POST", "/populate", [{"name": "a", "upstream": UPSTREAM},
                                              {"upstream": UPSTREAM}])
    assert bad.status_code == 400
    assert bad.json() == {"error": "missing required field: name at proxy 2", "status": 400,
                          "proxies": None}
    assert client.proxies() == {}  # checked before any proxy is created

    with socket.create_server(("127.0.0.1", 0)) as taken:
        clash = f"127.0.0.1:{taken.getsockname()[1]}"
        partial = _call(server, "POST", "/populate", [
            {"name": "first", "listen": "127.0.0.1:0", "upstream": UPSTREAM},
            {"name": "second", "listen": clash, "upstream": UPSTREAM},
            {"name": "third", "listen": "127.0.0.1:0", "upstream": UPSTREAM}])
    assert partial.status_code == 500
    body = partial.json()
    assert list(body) == ["error", "status", "proxies"]
    assert body["error"] == f"listen tcp {clash}: bind: address already in use"
    assert [p["name"] for p in body["proxies"]] == ["first"]
    assert set(client.proxies()) == {"first"}

    again = _call(server, "POST", "/populate", [
        {"name": "dup", "upstream": UPSTREAM, "listen": "127.0.0.1:0"},
        {"name": "dup", "upstream": "127.0.0.1:10", "listen": "127.0.0.1:0"}])
    assert again.status_code == 201  # the later entry replaces the earlier, as in Toxiproxy
    assert client.get_proxy("dup").upstream == "127.0.0.1:10"


# -- headers, router, error shape (api.go: Routes, apiError; gorilla/mux) --------------------------


def test_every_response_carries_a_request_id(server: ProxyServer,
                                             client: toxiproxy.Toxiproxy) -> None:
    client.create(upstream=UPSTREAM, name="rid")
    answers = [
        _call(server, "GET", "/version"),
        _call(server, "GET", "/proxies"),
        _call(server, "GET", "/proxies/nope"),
        _call(server, "POST", "/proxies", "{"),
        _call(server, "DELETE", "/proxies/rid/toxics/nope"),
        _call(server, "POST", "/reset"),
        _call(server, "GET", "/no/such/route"),
        _call(server, "PUT", "/proxies"),
        _call(server, "GET", "//proxies"),
        _call(server, "GET", "/proxies", headers={"User-Agent": "Mozilla/5.0"}),
    ]
    ids = [a.headers.get("X-Toxiproxy-Request-Id", "") for a in answers]
    assert all(REQUEST_ID.match(i) for i in ids), ids
    assert len(set(ids)) == len(ids)
    head = exchange(server.host, server.port, b"NOT A REQUEST\r\n\r\n").split(
        b"\r\n\r\n")[0].decode()
    assert head.startswith("HTTP/1.1 400 ")
    assert re.search(r"\r\nX-Toxiproxy-Request-Id: [0-9a-v]{20}\r\n", head + "\r\n")


def test_unknown_routes_and_methods_answer_as_toxiproxys_router(server: ProxyServer) -> None:
    for path in ("/nope", "/proxies/", "/proxies/a/toxics/b/c", "/", "/populate/x"):
        missing = _call(server, "GET", path)
        assert (missing.status_code, missing.text) == (404, "404 page not found\n"), path
        assert missing.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert missing.headers["X-Content-Type-Options"] == "nosniff"
    for method, path in (("PUT", "/proxies"), ("DELETE", "/reset"), ("POST", "/version"),
                         ("HEAD", "/proxies"), ("PUT", "/proxies/a")):
        wrong = _call(server, method, path)
        assert (wrong.status_code, wrong.content) == (405, b""), (method, path)
    answer = exchange(server.host, server.port,
                      b"get /proxies HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 405 ")  # methods are case-sensitive, as in Go
    assert answer.endswith(b"\r\n\r\n")
    redirect = exchange(server.host, server.port, b"GET //proxies/../version?x=1 HTTP/1.1\r\n"
                        b"Host: x\r\nConnection: close\r\n\r\n").decode()
    assert redirect.startswith("HTTP/1.1 301 ")
    assert "\r\nLocation: /version?x=1\r\n" in redirect
    assert _call(server, "GET", "/proxies", headers={"User-Agent": "Mozilla/5.0"}).text == (
        "User agent not allowed\n")


def test_error_bodies_are_toxiproxys_json_with_its_headers(server: ProxyServer,
                                                           client: toxiproxy.Toxiproxy) -> None:
    missing = _call(server, "GET", "/proxies/nope")
    assert missing.status_code == 404
    assert missing.text == '{"error":"proxy not found","status":404}\n'
    assert missing.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert missing.headers["X-Content-Type-Options"] == "nosniff"
    ghost = toxiproxy.proxy.Proxy(name="x", upstream=UPSTREAM, enabled=True, listen="")
    with pytest.raises(NotFound):
        ghost.destroy()


def test_version_endpoint_body_is_byte_for_byte_toxiproxys(server: ProxyServer) -> None:
    answer = _call(server, "GET", "/version")
    assert answer.status_code == 200
    assert answer.text == f'{{"version": "{VERSION}"}}\n'
    assert answer.headers["Content-Type"] == "application/json;charset=utf-8"


def test_success_bodies_are_compact_json_with_sorted_index(server: ProxyServer,
                                                          client: toxiproxy.Toxiproxy) -> None:
    for name in ("b", "a", "c"):
        client.create(upstream=UPSTREAM, name=name)
    index = _call(server, "GET", "/proxies")
    assert list(index.json()) == ["a", "b", "c"]
    assert ", " not in index.text and not index.text.endswith("\n")
    assert index.headers["Content-Type"] == "application/json"
    reset = _call(server, "POST", "/reset")
    assert (reset.status_code, reset.content) == (204, b"")
    assert "Content-Length" not in reset.headers and "Content-Type" not in reset.headers


# -- proxies (api.go ProxyCreate/ProxyUpdate; proxy.go Update, Differs) ---------------------------


def test_proxy_create_checks_in_toxiproxys_order(server: ProxyServer,
                                                 client: toxiproxy.Toxiproxy) -> None:
    def create(body: Any) -> tuple[int, str]:
        answer = _call(server, "POST", "/proxies", body)
        return answer.status_code, answer.json()["error"] if answer.status_code >= 400 else ""

    assert create({"name": 5, "upstream": 6}) == (
        400, "bad request body: json: cannot unmarshal number into Go struct field "
             "Proxy.name of type string")
    assert create("null") == (400, "missing required field: name")
    assert create({"listen": "nonsense"}) == (400, "missing required field: name")
    assert create({"name": "x", "listen": "nonsense"}) == (400, "missing required field: upstream")
    assert create({"name": "x", "upstream": UPSTREAM, "enabled": "yes"})[0] == 400
    trailing = json.dumps({"name": "x", "upstream": UPSTREAM}) + " trailing words"
    assert create(trailing) == (201, "")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        clash = f"127.0.0.1:{taken.getsockname()[1]}"
        assert create({"name": "x", "upstream": UPSTREAM, "listen": clash}) == (
            409, "proxy already exists")  # the name is checked before the bind
        assert create({"name": "y", "upstream": UPSTREAM, "listen": clash}) == (
            500, f"listen tcp {clash}: bind: address already in use")
    with pytest.raises(ProxyExists):
        client.create(upstream=UPSTREAM, name="x")


def test_json_field_names_match_case_insensitively_like_go(server: ProxyServer,
                                                          client: toxiproxy.Toxiproxy) -> None:
    answer = _call(server, "POST", "/proxies", {"NAME": "ci", "Upstream": UPSTREAM,
                                                "name": "ci2"})
    assert answer.status_code == 201
    assert answer.json()["name"] == "ci2"  # the last match wins, as in encoding/json
    toxic = _call(server, "POST", "/proxies/ci2/toxics",
                  {"Type": "latency", "ATTRIBUTES": {"Latency": 7}})
    assert toxic.json()["attributes"] == {"latency": 7, "jitter": 0}


def test_proxy_update_semantics(server: ProxyServer, client: toxiproxy.Toxiproxy,
                                echo: EchoServer) -> None:
    port = _free_port()
    proxy = client.create(upstream=echo.address, name="upd", listen=f"127.0.0.1:{port}")
    proxy.add_toxic(type="latency", attributes={"latency": 1})
    conn = _connect(proxy.listen)
    try:
        _round_trip(conn)
        same = _call(server, "PATCH", "/proxies/upd",
                     {"listen": f"localhost:{port}", "name": "ignored", "enabled": None})
        assert same.status_code == 200
        assert same.json()["listen"] == f"127.0.0.1:{port}"
        assert same.json()["name"] == "upd"
        _round_trip(conn)  # unchanged after resolving localhost: nothing restarted
        assert _call(server, "POST", "/proxies/upd", "null").status_code == 200
        _round_trip(conn)
        moved = _call(server, "POST", "/proxies/upd", {"upstream": "127.0.0.1:10"}).json()
        assert moved["upstream"] == "127.0.0.1:10"
        assert moved["enabled"] is True
        assert moved["listen"] == f"127.0.0.1:{port}"
        assert [t["name"] for t in moved["toxics"]] == ["latency_downstream"]
        conn.settimeout(5)
        assert conn.recv(16) == b""  # a changed upstream restarts: connections close
    finally:
        conn.close()
    proxy.disable()
    assert client.get_proxy("upd").enabled is False
    proxy.enable()
    assert client.get_proxy("upd").enabled is True
    assert _call(server, "PATCH", "/proxies/nope", {"enabled": True}).status_code == 404


# -- toxics (toxic_collection.go AddToxicJson/UpdateToxicJson; toxics/*.go) ----------------------


def test_toxic_defaults(server: ProxyServer, client: toxiproxy.Toxiproxy) -> None:
    proxy = client.create(upstream=UPSTREAM, name="def")
    made = _call(server, "POST", "/proxies/def/toxics", {"type": "slicer"})
    assert made.status_code == 200
    assert made.text == ('{"attributes":{"average_size":0,"size_variation":0,"delay":0},'
                         '"name":"slicer_downstream","type":"slicer","stream":"downstream",'
                         '"toxicity":1}')
    upper = _call(server, "POST", "/proxies/def/toxics",
                  {"type": "latency", "stream": "UpStream", "toxicity": None,
                   "attributes": {"latency": None, "jitter": 3, "unknown": "x"}}).json()
    assert upper == {"attributes": {"latency": 0, "jitter": 3}, "name": "latency_UpStream",
                     "type": "latency", "stream": "UpStream", "toxicity": 1}
    assert _call(server, "POST", "/proxies/def/toxics", {"type": "noop",
                                                         "toxicity": 0.1}).json() == {
        "attributes": {}, "name": "noop_downstream", "type": "noop", "stream": "downstream",
        "toxicity": 0.1}
    assert set(proxy.toxics()) == {"slicer_downstream", "latency_UpStream", "noop_downstream"}


def test_toxic_create_checks_in_toxiproxys_order(server: ProxyServer,
                                                 client: toxiproxy.Toxiproxy) -> None:
    proxy = client.create(upstream=UPSTREAM, name="ord")
    proxy.add_toxic(type="timeout", name="taken")

    def add(body: Any, proxy_name: str = "ord") -> tuple[int, str]:
        answer = _call(server, "POST", f"/proxies/{proxy_name}/toxics", body)
        return answer.status_code, answer.json().get("error", "")

    assert add({"type": "nope"}, "missing") == (404, "proxy not found")
    assert add({"stream": 5, "type": "nope", "attributes": []})[0] == 400
    assert add({"stream": 5, "type": "nope"})[1].startswith("bad request body: json: ")
    assert add({"type": "nope", "stream": "sideways"}) == (
        400, "stream was invalid, can be either upstream or downstream")
    assert add({"type": "nope", "name": "taken"}) == (400, "invalid toxic type")
    assert add("null") == (400, "invalid toxic type")
    assert add({"type": "latency", "name": "taken", "attributes": {"latency": "x"}}) == (
        409, "toxic already exists")
    assert add({"type": "latency", "attributes": {"latency": "x"}})[1].startswith(
        "bad request body: json: cannot unmarshal string into Go struct field ")
    with pytest.raises(InvalidToxic):
        proxy.add_toxic(type="earthquake")
    with pytest.raises(ProxyExists):
        proxy.add_toxic(type="latency", name="taken")


def test_toxic_update_semantics(server: ProxyServer, client: toxiproxy.Toxiproxy) -> None:
    client.create(upstream=UPSTREAM, name="tu")
    _call(server, "POST", "/proxies/tu/toxics",
          {"type": "latency", "toxicity": 0.5, "attributes": {"latency": 100, "jitter": 10}})
    url = "/proxies/tu/toxics/latency_downstream"
    updated = _call(server, "PATCH", url, {"attributes": {"latency": 1000}, "type": "timeout",
                                           "stream": "upstream", "name": "renamed"}).json()
    assert updated == {"attributes": {"latency": 1000, "jitter": 10},
                       "name": "latency_downstream", "type": "latency",
                       "stream": "downstream", "toxicity": 0.5}
    assert _call(server, "POST", url, {"toxicity": 1}).json()["toxicity"] == 1
    assert _call(server, "POST", url, "null").json()["attributes"]["latency"] == 1000
    rejected = _call(server, "POST", url, {"attributes": {"latency": 5, "jitter": "x"}})
    assert rejected.status_code == 400
    assert _call(server, "GET", url).json()["attributes"] == {"latency": 1000, "jitter": 10}
    assert _call(server, "POST", "/proxies/tu/toxics/nope", {}).json() == {
        "error": "toxic not found", "status": 404}
    assert _call(server, "POST", "/proxies/nope/toxics/nope", {}).json() == {
        "error": "proxy not found", "status": 404}


def test_negative_attributes_are_accepted_and_act_as_toxiproxys(
    server: ProxyServer, client: toxiproxy.Toxiproxy, echo: EchoServer,
) -> None:
    proxy = client.create(upstream=echo.address, name="neg")
    toxics = [
        {"type": "latency", "name": "lat", "attributes": {"latency": -1000, "jitter": -5}},
        {"type": "bandwidth", "name": "bw", "attributes": {"rate": -1}},
        {"type": "slicer", "name": "sl", "attributes": {"average_size": 2,
                                                        "size_variation": -3, "delay": -1}},
        {"type": "slow_close", "name": "sc", "attributes": {"delay": -1}},
        {"type": "latency", "name": "up", "stream": "upstream",
         "attributes": {"latency": -1, "jitter": -1}},
    ]
    for toxic in toxics:
        answer = _call(server, "POST", "/proxies/neg/toxics", toxic)
        assert answer.status_code == 200, answer.text
        assert answer.json()["attributes"] == {**answer.json()["attributes"],
                                               **toxic["attributes"]}  # echoed as sent
    conn = _connect(proxy.listen)
    with conn:
        assert _round_trip(conn, b"0123456789") < 0.5  # negative delays and rates: none
    # timeout < 0 is timeout 0 (hold data, never close); reset_peer < 0 resets at once
    proxy.destroy_toxic("lat")
    _call(server, "POST", "/proxies/neg/toxics",
          {"type": "timeout", "name": "hold", "attributes": {"timeout": -1}})
    with _connect(proxy.listen) as held:
        held.sendall(b"x")
        held.settimeout(0.3)
        with pytest.raises(TimeoutError):
            held.recv(16)  # neither data nor a close
        proxy.destroy_toxic("hold")
    _call(server, "POST", "/proxies/neg/toxics",
          {"type": "reset_peer", "name": "rst", "attributes": {"timeout": -5}})
    with _connect(proxy.listen) as reset:
        reset.sendall(b"x")
        with pytest.raises(ConnectionResetError):
            _read_to_end(reset)


def test_limit_data_of_zero_or_less_closes_on_the_first_data(
    server: ProxyServer, client: toxiproxy.Toxiproxy, echo: EchoServer,
) -> None:
    proxy = client.create(upstream=echo.address, name="lim")
    proxy.add_toxic(type="limit_data", attributes={"bytes": -10})
    with _connect(proxy.listen) as conn:
        conn.sendall(b"hello")
        assert conn.recv(16) == b""


def test_head_answers_carry_no_body_so_keep_alive_stays_in_step(server: ProxyServer) -> None:
    request = b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /version HTTP/1.1\r\nHost: x\r\n" \
              b"Connection: close\r\n\r\n"
    answers = exchange(server.host, server.port, request)
    first, second = answers.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200 ") and first.endswith(b"\r\n\r\n")  # headers only
    assert second.startswith(b"200 ") and second.endswith(f'"{VERSION}"}}\n'.encode())


def test_redirect_location_is_escaped_never_a_header_injection(server: ProxyServer) -> None:
    answer = exchange(server.host, server.port, b"GET //a%0D%0AX-Injected:%201/b%20c HTTP/1.1"
                                                b"\r\nHost: x\r\nConnection: close\r\n\r\n")
    head = answer.split(b"\r\n\r\n")[0].decode()
    assert head.startswith("HTTP/1.1 301 ")
    assert "\r\nLocation: /a%0D%0AX-Injected:%201/b%20c\r\n" in head + "\r\n"
    assert "\r\nX-Injected" not in head
