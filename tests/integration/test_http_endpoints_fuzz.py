"""Any request to any HTTP endpoint gets a clean answer, and the server serves on.

One property per endpoint of the proxy API (Toxiproxy's routes) and of the scheduler's
HTTP trigger: fuzzed methods, paths, query strings, headers, JSON bodies (near-valid
shapes, any JSON, deep nesting, raw bytes) and toxic attribute values. Every request
goes over a raw socket, so a dropped connection or a hang is seen as such. The answer
must be a well-formed HTTP response: an error with a clean body, or an acceptance;
never a 500 carrying a Python message, never an unhandled exception in the log. Toxics
that are accepted must also keep the data path up.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from helpers_net import EchoServer, exchange
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reliability.chaos.proxy import ProxyServer
from reliability.chaos.proxy.server import AsyncProxyServer
from reliability.schedule import CronTimetable, RunRequest, Schedule, Scheduler
from reliability.schedule.scheduler import RunOutcome
from reliability.schedule.serve import TriggerServer

pytestmark = pytest.mark.integration

FUZZ = settings(max_examples=35, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
PYTHON_ISMS = ("Traceback", "Error(", "object has no attribute", "unsupported operand",
               "maximum recursion", "not subscriptable", "takes ", "NoneType",
               "invalid literal for int", "can not be less than zero")
_STATUS = re.compile(rb"^HTTP/1\.[01] (\d{3}) ")


# -- what a request may be ------------------------------------------------------------------------

INT64 = 2**63
numbers = st.one_of(
    st.integers(min_value=-INT64 - 10, max_value=INT64 + 10),
    st.sampled_from([0, 1, -1, 10**400, -(10**400), 2**63 - 1, -(2**63), 2**64]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.5, 1.0, -5.0, 1e308, 3.5e38, 1e-320]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=20))
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12,
)
listens = st.one_of(
    st.sampled_from(["127.0.0.1:0", "localhost:0", "[::1]:0", "127.0.0.1:65536",
                     "127.0.0.1", "nonsense", "", "127.0.0.1:-1", "h.invalid:80"]),
    st.text(alphabet="abcxyz.:[]", max_size=12).map(lambda t: "h" + t),  # never a wildcard
)
names = st.one_of(st.sampled_from(["p", "q", "", "a/b", "%zz", "..", "ünï"]),
                  st.text(max_size=12))
proxy_bodies = st.fixed_dictionaries({}, optional={
    "name": st.one_of(names, json_values), "listen": st.one_of(listens, json_values),
    "upstream": st.one_of(st.sampled_from(["127.0.0.1:9", "x", ""]), json_values),
    "enabled": st.one_of(st.booleans(), json_values), "NAME": names,
})
toxic_types = st.sampled_from(["latency", "bandwidth", "slow_close", "timeout", "reset_peer",
                               "slicer", "limit_data", "noop", "LATENCY", "", "gremlin"])
attribute_keys = st.sampled_from(["latency", "jitter", "rate", "delay", "timeout",
                                  "average_size", "size_variation", "bytes", "Latency", "x"])
toxic_bodies = st.fixed_dictionaries({}, optional={
    "type": st.one_of(toxic_types, json_values),
    "stream": st.one_of(st.sampled_from(["upstream", "downstream", "UPSTREAM", "", "side"]),
                        json_values),
    "name": st.one_of(names, json_values),
    "toxicity": st.one_of(numbers, json_values),
    "attributes": st.one_of(st.dictionaries(attribute_keys, st.one_of(numbers, json_values),
                                            max_size=4), json_values),
})


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def bodies(shaped: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """Near-valid bodies, any JSON, lists of shapes, deep nesting and raw bytes."""
    return st.one_of(
        shaped.map(lambda v: json.dumps(v).encode()),
        st.lists(shaped, max_size=3).map(lambda v: json.dumps(v).encode()),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.integers(min_value=900, max_value=20000).map(_deep),
        st.sampled_from([b"", b"null", b"NaN", b'{"a": Infinity}', b"{", b"\xff\xfe{}",
                         b'{"name": "\\ud800", "upstream": "x:1"}', b"[] trailing"]),
        st.binary(max_size=40),
    )


methods = st.sampled_from(["GET", "POST", "PATCH", "PUT", "DELETE", "HEAD", "OPTIONS",
                           "get", "BREW"])
queries = st.one_of(st.just(""), st.text(max_size=15).map(lambda q: "?" + quote(q, safe="=&")))
framings = st.sampled_from(["length", "length", "length", "chunked", "bad-chunk", "browser"])


def build(method: str, path: str, body: bytes, framing: str) -> bytes:
    """A raw HTTP/1.1 request that asks the server to close after answering."""
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    if framing == "browser":
        head.append("User-Agent: Mozilla/5.0")
    if framing in ("chunked", "bad-chunk"):
        head.append("Transfer-Encoding: chunked")
        size = b"-1" if framing == "bad-chunk" else f"{len(body):x}".encode()
        payload = size + b"\r\n" + body + b"\r\n0\r\n\r\n" if body else b"0\r\n\r\n"
    else:
        head.append(f"Content-Length: {len(body)}")
        payload = body
    return ("\r\n".join(head) + "\r\n\r\n").encode("utf-8", errors="replace") + payload


def check(raw: bytes, *, allowed_5xx: tuple[str, ...] = ()) -> tuple[int, bytes, bytes]:
    """A well-formed answer; 5xx only for the named reasons; no Python in the body."""
    assert raw, "the connection closed without an answer"
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, raw[:200]
    match = _STATUS.match(head)
    assert match, head[:200]
    status = int(match.group(1))
    text = body.decode("utf-8", errors="replace")
    assert not any(p in text for p in PYTHON_ISMS), text[:300]
    if status >= 500:
        assert any(reason in text for reason in allowed_5xx), (status, text[:300])
    if b"application/json" in head and body and status >= 400:
        error = json.loads(body)
        assert isinstance(error.get("error"), str), error
    return status, head, body


# -- the proxy API ------------------------------------------------------------------------------------


class ErrorLog(logging.Handler):
    """Collects ERROR records of the proxy server and asyncio (unhandled exceptions)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def errors() -> Iterator[ErrorLog]:
    handler = ErrorLog()
    loggers = [logging.getLogger(name) for name in ("asyncio", "reliability.chaos.proxy")]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler
    for logger in loggers:
        logger.removeHandler(handler)


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoServer]:
    upstream = EchoServer()
    yield upstream
    upstream.close()


@pytest.fixture(scope="module")
def api(errors: ErrorLog, echo: EchoServer) -> Iterator[ProxyServer]:
    with ProxyServer(port=0, seed=1) as server:
        yield server


PROXY_5XX = ("listen tcp", "lookup ")  # binds and name lookups fail with 500 in Toxiproxy too


def _reset(api: ProxyServer, echo: EchoServer) -> dict[str, Any]:
    """No proxies but ``p`` (a fresh one to the echo upstream, no toxics)."""

    async def clear(server: AsyncProxyServer) -> None:
        await server.registry.close()

    api.call(clear)
    return api.populate([{"name": "p", "listen": "127.0.0.1:0", "upstream": echo.address}])[0]


def _send(api: ProxyServer, errors: ErrorLog, method: str, path: str, body: bytes,
          framing: str) -> tuple[int, bytes, bytes]:
    answer = check(exchange(api.host, api.port, build(method, path, body, framing)),
                   allowed_5xx=PROXY_5XX)
    serves = check(exchange(api.host, api.port, build("GET", "/version", b"", "length")))
    assert serves[0] == 200
    assert not errors.records, [r.getMessage() for r in errors.records]
    return answer


@FUZZ
@given(method=methods, query=queries, body=bodies(proxy_bodies), framing=framings)
def test_proxies_collection(api: ProxyServer, errors: ErrorLog, echo: EchoServer,
                            method: str, query: str, body: bytes, framing: str) -> None:
    _reset(api, echo)
    _send(api, errors, method, "/proxies" + query, body, framing)


@FUZZ
@given(method=methods, query=queries, body=bodies(proxy_bodies), framing=framings)
def test_populate(api: ProxyServer, errors: ErrorLog, echo: EchoServer,
                  method: str, query: str, body: bytes, framing: str) -> None:
    _reset(api, echo)
    _send(api, errors, method, "/populate" + query, body, framing)


@FUZZ
@given(method=methods, name=names, query=queries, body=bodies(proxy_bodies), framing=framings)
def test_proxy_item(api: ProxyServer, errors: ErrorLog, echo: EchoServer, method: str,
                    name: str, query: str, body: bytes, framing: str) -> None:
    _reset(api, echo)
    path = "/proxies/" + (quote(name, safe="") if name != "p" else "p")
    _send(api, errors, method, path + query, body, framing)


@FUZZ
@given(method=methods, query=queries, body=bodies(toxic_bodies), framing=framings)
def test_toxics_collection(api: ProxyServer, errors: ErrorLog, echo: EchoServer, method: str,
                           query: str, body: bytes, framing: str) -> None:
    _reset(api, echo)
    _send(api, errors, method, "/proxies/p/toxics" + query, body, framing)


int64s = st.one_of(st.integers(min_value=-(2**63), max_value=2**63 - 1),
                   st.integers(min_value=-3, max_value=3),
                   st.sampled_from([2**63 - 1, -(2**63), 10**12, 1000, 50]))
TOXIC_ATTRIBUTES = {"latency": ("latency", "jitter"), "bandwidth": ("rate",),
                    "slow_close": ("delay",), "timeout": ("timeout",),
                    "reset_peer": ("timeout",), "slicer": ("average_size", "size_variation",
                                                           "delay"),
                    "limit_data": ("bytes",), "noop": ()}
accepted_toxics = st.sampled_from(sorted(TOXIC_ATTRIBUTES)).flatmap(
    lambda kind: st.fixed_dictionaries({
        "type": st.just(kind),
        "stream": st.sampled_from(["upstream", "downstream", "UpStream"]),
        "toxicity": st.one_of(st.just(1), st.floats(min_value=0, max_value=1)),
        "attributes": st.fixed_dictionaries(
            {}, optional=dict.fromkeys(TOXIC_ATTRIBUTES[kind], int64s)),
    }))


@FUZZ
@given(toxics=st.lists(accepted_toxics, min_size=1, max_size=3),
       payload=st.binary(min_size=1, max_size=2048))
def test_accepted_toxics_keep_the_data_path_up(api: ProxyServer, errors: ErrorLog,
                                               echo: EchoServer, toxics: list[dict[str, Any]],
                                               payload: bytes) -> None:
    """Any attribute values in int64 (extremes, negatives) are accepted as in Toxiproxy; the
    data path never raises, and once the toxics are removed the bytes arrive or the
    connection ends cleanly (a timeout, limit_data or reset_peer toxic may have ended it)."""
    proxy = _reset(api, echo)
    for index, toxic in enumerate(toxics):
        body = json.dumps({**toxic, "name": f"t{index}"}).encode()
        status, _, answer = _send(api, errors, "POST", "/proxies/p/toxics", body, "length")
        assert status == 200, answer
    host, port = proxy["listen"].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(payload)
        api.reset()  # removes every toxic; what a toxic held is flushed or the stream ends
        got = b""
        try:
            while len(got) < len(payload) and (chunk := conn.recv(65536)):
                got += chunk
        except ConnectionResetError:
            pass
        except TimeoutError:
            pytest.fail(f"the connection hung after the toxics were removed: {toxics}")
    assert payload.startswith(got)
    assert not errors.records, [r.getMessage() for r in errors.records]


@FUZZ
@given(method=methods, toxic=names, query=queries, body=bodies(toxic_bodies), framing=framings)
def test_toxic_item(api: ProxyServer, errors: ErrorLog, echo: EchoServer, method: str,
                    toxic: str, query: str, body: bytes, framing: str) -> None:
    _reset(api, echo)
    existing = {"type": "latency", "name": "t", "attributes": {"latency": 1}}
    assert check(exchange(api.host, api.port, build(
        "POST", "/proxies/p/toxics", json.dumps(existing).encode(), "length")))[0] == 200
    name = "t" if toxic == "p" else quote(toxic, safe="")
    _send(api, errors, method, f"/proxies/p/toxics/{name}" + query, body, framing)


@FUZZ
@given(method=methods, route=st.sampled_from(["/reset", "/version", "/metrics"]),
       query=queries, body=bodies(json_values), framing=framings)
def test_reset_version_and_metrics(api: ProxyServer, errors: ErrorLog, echo: EchoServer,
                                   method: str, route: str, query: str, body: bytes,
                                   framing: str) -> None:
    _reset(api, echo)
    _send(api, errors, method, route + query, body, framing)


raw_targets = st.one_of(
    st.text(alphabet="/.%abz09?#&= ", max_size=25).map(lambda t: "/" + t),
    st.sampled_from(["*", "http://x/proxies", "//proxies", "/proxies/../version", "/%",
                     "/" + "a" * 5000]),
)


@FUZZ
@given(method=st.one_of(methods, st.text(alphabet="ABCZ \t", min_size=0, max_size=6)),
       target=raw_targets, version=st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2", "x"]),
       headers=st.lists(st.text(alphabet="abc:- \t\x00\xff", max_size=12), max_size=3),
       tail=st.binary(max_size=30))
def test_any_request_line_and_headers(api: ProxyServer, errors: ErrorLog, method: str,
                                      target: str, version: str, headers: list[str],
                                      tail: bytes) -> None:
    raw = "\r\n".join([f"{method} {target} {version}", *headers, "Connection: close"])
    data = raw.encode("utf-8", errors="replace") + b"\r\n\r\n" + tail
    check(exchange(api.host, api.port, data), allowed_5xx=("501 Not Implemented",))
    assert check(exchange(api.host, api.port, build("GET", "/version", b"", "length")))[0] == 200
    assert not errors.records, [r.getMessage() for r in errors.records]


# -- the scheduler's HTTP trigger -------------------------------------------------------------------


def _ok(req: RunRequest) -> RunOutcome:
    return RunOutcome(req.run_id, "succeeded")


@pytest.fixture(scope="module")
def trigger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TriggerServer]:
    home: Path = tmp_path_factory.mktemp("sched")
    sched = Scheduler([Schedule("daily", "p", CronTimetable("30 2 * * *", "Europe/Berlin"))],
                      execute=_ok, home=home, now=lambda: dt.datetime(2026, 2, 1, tzinfo=dt.UTC))
    server = TriggerServer(sched, "127.0.0.1", 0).start()
    yield server
    server.stop()
    sched.shutdown()
    sched.store.close()


intervals = st.one_of(
    st.sampled_from(["2026-01-30T01:30:00+00:00/2026-01-31T01:30:00+00:00",
                     "0001-01-01T00:00:00+01:00/0001-01-02T00:00:00+01:00",
                     "9999-12-31T00:00:00-01:00/9999-12-31T23:00:00-01:00",
                     "2026-01-31/2026-01-30", "x/y", "/", ""]),
    st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30),
                 timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=14))]))
    .map(lambda d: f"{d.isoformat()}/{(d + dt.timedelta(days=1)).isoformat()}"
         if d.year < 9999 else d.isoformat()),
    json_values,
)
trigger_bodies = st.fixed_dictionaries({}, optional={
    "interval": intervals,
    "reprocess": st.one_of(st.sampled_from(["none", "failed", "all", "ALL", ""]), json_values),
    "force": json_values,
})
trigger_targets = st.one_of(st.sampled_from(["/trigger/daily", "/trigger/nope", "/trigger/",
                                             "/schedules", "/healthz", "/"]),
                            names.map(lambda n: "/trigger/" + quote(n, safe="")))


def _trigger_serves(server: TriggerServer) -> None:
    status, _, body = check(exchange(server.host, server.port,
                                     build("GET", "/healthz", b"", "length")))
    assert (status, json.loads(body)) == (200, {"ok": True})


@FUZZ
@given(method=methods, target=trigger_targets, query=queries, body=bodies(trigger_bodies),
       framing=framings)
def test_schedule_trigger_endpoint(trigger: TriggerServer, method: str, target: str,
                                   query: str, body: bytes, framing: str) -> None:
    raw = exchange(trigger.host, trigger.port, build(method, target + query, body, framing))
    status, head, _ = check(raw)
    assert status < 500
    assert status in (200, 202, 400, 404, 405, 409, 411, 413)
    if method != "HEAD":
        assert b"Content-Type: application/json" in head
    _trigger_serves(trigger)


@FUZZ
@given(method=st.one_of(methods, st.text(alphabet="ABCZ \t", max_size=6)),
       target=raw_targets, version=st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2", "x"]),
       tail=st.binary(max_size=30))
def test_schedule_server_any_request_line(trigger: TriggerServer, method: str, target: str,
                                          version: str, tail: bytes) -> None:
    data = f"{method} {target} {version}\r\nConnection: close\r\n\r\n".encode() + tail
    status, _, _ = check(exchange(trigger.host, trigger.port, data))
    assert status < 500 or status == 505
    _trigger_serves(trigger)
