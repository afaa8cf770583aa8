"""The scheduler's HTTP trigger refuses what it does not understand, and always answers.

Reproducers: deeply nested JSON closed the connection with a traceback; ``?interval=``
and unknown body keys were ignored and the latest interval was triggered instead.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import post_json
from helpers_net import exchange

from reliability.pipeline import DataInterval
from reliability.schedule import CronTimetable, RunRequest, Schedule, Scheduler
from reliability.schedule.scheduler import RunOutcome
from reliability.schedule.serve import TriggerServer

pytestmark = pytest.mark.integration
UTC = dt.UTC
INTERVAL = "2026-01-30T01:30:00+00:00/2026-01-31T01:30:00+00:00"


def _ok(req: RunRequest) -> RunOutcome:
    return RunOutcome(req.run_id, "succeeded")


@pytest.fixture
def sched(tmp_path: Path) -> Iterator[Scheduler]:
    scheduler = Scheduler([Schedule("daily", "p", CronTimetable("30 2 * * *", "Europe/Berlin"))],
                          execute=_ok, home=tmp_path,
                          now=lambda: dt.datetime(2026, 2, 1, tzinfo=UTC))
    yield scheduler
    scheduler.shutdown()
    scheduler.store.close()


@pytest.fixture
def server(sched: Scheduler) -> Iterator[TriggerServer]:
    srv = TriggerServer(sched, "127.0.0.1", 0).start()
    yield srv
    srv.stop()


def _runs(sched: Scheduler) -> int:
    return len(sched.store.query("SELECT * FROM schedule_runs"))


def _raw(server: TriggerServer, data: bytes) -> bytes:
    return exchange(server.host, server.port, data)


def _healthy(server: TriggerServer) -> None:
    with urllib.request.urlopen(f"{server.url}/healthz", timeout=5) as resp:
        assert json.loads(resp.read()) == {"ok": True}


def test_deeply_nested_json_gets_a_400_not_a_closed_connection(
    server: TriggerServer, sched: Scheduler,
) -> None:
    for nested in (b"[" * 30_000 + b"]" * 30_000, b'{"a":' * 10_000 + b"1" + b"}" * 10_000):
        assert len(nested) <= 65536  # within the size limit: the nesting is what is refused
        code, answer = post_json(f"{server.url}/trigger/daily", nested)
        assert code == 400
        assert "nested too deeply" in str(answer["error"])
    assert _runs(sched) == 0
    _healthy(server)


@pytest.mark.parametrize("query", [f"interval={INTERVAL}", "source=test", "x", "reprocess=all"])
def test_query_parameters_are_refused_not_ignored(server: TriggerServer, sched: Scheduler,
                                                  query: str) -> None:
    code, answer = post_json(f"{server.url}/trigger/daily?{query}", b"{}")
    assert code == 400
    assert "query" in str(answer["error"]) and "JSON body" in str(answer["error"])
    assert _runs(sched) == 0


def test_unknown_body_keys_are_refused_not_ignored(server: TriggerServer,
                                                   sched: Scheduler) -> None:
    body = json.dumps({"interval": INTERVAL, "intervall": INTERVAL, "force": True}).encode()
    code, answer = post_json(f"{server.url}/trigger/daily", body)
    assert code == 400
    error = str(answer["error"])
    assert "'force'" in error and "'intervall'" in error
    assert "interval" in error and "reprocess" in error  # says what it does understand
    assert _runs(sched) == 0


def test_a_known_body_still_triggers_that_interval(server: TriggerServer,
                                                   sched: Scheduler) -> None:
    body = json.dumps({"interval": INTERVAL, "reprocess": "none"}).encode()
    code, answer = post_json(f"{server.url}/trigger/daily", body)
    assert code == 202, answer
    assert answer["interval"] == DataInterval.parse(INTERVAL).key()
    assert answer["started"] is True
    code, again = post_json(f"{server.url}/trigger/daily", body)
    assert (code, again["started"]) == (409, False)
    code, _latest = post_json(f"{server.url}/trigger/daily", b"")
    assert code in (202, 409)


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"PUT /trigger/daily HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405),
    (b"DELETE /trigger/daily HTTP/1.1\r\n\r\n", 405),
    (b"GET /trigger/daily HTTP/1.1\r\n\r\n", 405),
    (b"BREW /trigger/daily HTTP/1.1\r\n\r\n", 405),
    (b"POST /trigger/daily HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
     411),
    (b"POST /trigger/daily HTTP/1.1\r\nContent-Length: 999999\r\n\r\n", 413),
    (b"POST /trigger/daily HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
    (b"GARBAGE\r\n\r\n", 400),
])
def test_other_requests_get_a_json_error_and_the_server_stays_up(
    server: TriggerServer, sched: Scheduler, request_bytes: bytes, status: int,
) -> None:
    raw = _raw(server, request_bytes)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith((f"HTTP/1.1 {status} ".encode(), f"HTTP/1.0 {status} ".encode())), raw
    assert b"Content-Type: application/json" in head
    assert "error" in json.loads(body)
    assert _runs(sched) == 0
    _healthy(server)


def test_unknown_routes_and_schedules_are_404s(server: TriggerServer) -> None:
    code, answer = post_json(f"{server.url}/trigger/nope", b"{}")
    assert code == 404 and answer["schedules"] == ["daily"]
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{server.url}/nope", timeout=5)
    with info.value as err:
        assert err.code == 404
        assert "POST /trigger/<schedule>" in json.loads(err.read())["error"]
