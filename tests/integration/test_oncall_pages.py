"""`reliability serve` over a real ledger, through real HTTP: runbooks rendered from the
evidence of the failure behind an alert, run and alert pages, the Alertmanager webhook,
chaos reports, /metrics, and bad requests that never bring it down."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reliability.runner.ledger import Ledger
from reliability.web import serve
from reliability.web.server import OnCallServer

pytestmark = pytest.mark.integration


def failed_run(led: Ledger, run_id: str, *, pipeline: str = "etl", step: str = "load",
               trigger: str = "manual", error: str = "disk full",
               kind: str = "step_failed") -> None:
    """A run whose ``step`` failed, written through the ledger's own API."""
    led.create_run(run_id, pipeline, run_id, {"day": 1}, sorted({"extract", step}),
                   trigger=trigger,
                   interval=("2026-01-01T00:00:00+00:00", "2026-01-02T00:00:00+00:00"))
    led.mark_run_started(run_id)
    led.start_attempt(run_id, step, 1, 4242, {})
    led.end_attempt(run_id, step, 1, "failed", "ValueError", error)
    if kind == "worker_lost":
        led.record_event(run_id, time.time(), "worker_lost", step, 1, {"error": error})
    led.record_event(run_id, time.time(), "step_failed", step, 1,
                     {"error": error, "error_type": "ValueError"})
    led.finish_run(run_id, "failed", error)


def good_run(led: Ledger, run_id: str, *, pipeline: str = "etl",
             trigger: str = "manual") -> None:
    led.create_run(run_id, pipeline, run_id, {}, ["extract"], trigger=trigger)
    led.mark_run_started(run_id)
    led.finish_run(run_id, "succeeded")


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read().decode()


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read().decode()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def server(home: Path, tmp_path: Path) -> Iterator[OnCallServer]:
    with Ledger(home / "ledger.db") as led:
        good_run(led, "etl-good")
        failed_run(led, "etl-old", step="load", error="old failure")
        failed_run(led, "etl-new", step="load", error="new failure")
        failed_run(led, "etl-other", step="extract", error="other step")
        failed_run(led, "etl-chaos", step="load", trigger="chaos", error="injected fault")
        good_run(led, "etl-chaos-good", trigger="chaos-baseline")
    with serve(home, port=0) as srv:
        yield srv


def alert(status: str, *, step: str = "load", fingerprint: str = "f1",
          starts: str = "2030-01-01T00:00:00Z", name: str = "ReliabilityStepFailed",
          pipeline: str = "etl") -> dict[str, object]:
    return {"status": status, "fingerprint": fingerprint, "startsAt": starts,
            "endsAt": "2030-01-01T01:00:00Z" if status == "resolved" else
            "0001-01-01T00:00:00Z",
            "labels": {"alertname": name, "pipeline": pipeline, "step": step,
                       "severity": "page"},
            "annotations": {"summary": f"step {step} of pipeline {pipeline} failed",
                            "runbook_url": f"http://x/runbooks/{pipeline}/step_failed.html"
                                           f"?step={step}"},
            "generatorURL": "http://prometheus/graph"}


def webhook(alerts: list[dict[str, object]]) -> bytes:
    return json.dumps({"version": "4", "status": "firing", "receiver": "reliability",
                       "groupKey": "{}:{}", "alerts": alerts}).encode()


# -- runbooks behind runbook_url --------------------------------------------------------
def test_the_runbook_shows_the_latest_production_failure_of_its_step(
        server: OnCallServer) -> None:
    status, html = get(f"{server.url}/runbooks/etl/step_failed.html?step=load")
    assert status == 200
    assert "etl-new" in html and "new failure" in html  # the latest, not the chaos run
    assert "etl-chaos" not in html.replace("etl-chaos-good", "")
    assert "etl-good" in html and "etl-chaos-good" not in html  # last good: production only
    assert "reliability resume etl-new" in html
    assert "reliability backfill etl --start 2026-01-01T00:00:00+00:00" in html
    assert 'id="evidence-run" href="/runs/etl-new"' in html


def test_step_and_run_narrow_the_runbook_down(server: OnCallServer) -> None:
    _, other = get(f"{server.url}/runbooks/etl/step_failed.html?step=extract")
    assert "etl-other" in other and "other step" in other
    _, old = get(f"{server.url}/runbooks/etl/step_failed.html?run=etl-old")
    assert "old failure" in old and "new failure" not in old


def test_without_a_failure_on_record_the_runbook_is_the_generic_one(
        server: OnCallServer) -> None:
    status, html = get(f"{server.url}/runbooks/etl/worker_lost.html?step=load")
    assert status == 200 and "No production failure of this kind" in html
    assert "evidence-run" not in html
    assert get(f"{server.url}/runbooks/etl/no_such_family.html")[0] == 404


def test_an_error_budget_burn_shows_the_latest_failure_as_its_evidence(
        server: OnCallServer) -> None:
    _, html = get(f"{server.url}/runbooks/etl/sla_breach.html")
    assert "SLA breached" in html and "etl-other" in html  # the newest production failure


def test_a_contract_runbook_shows_the_failed_check_its_cases_and_the_fault(
        home: Path) -> None:
    with Ledger(home / "ledger.db") as led:
        led.create_run("etl-bad", "etl", "etl-bad", {}, ["load"], trigger="schedule")
        led.record_event("etl-bad", time.time(), "fault_injected", "load", 1,
                         {"fault": "corrupt-amount", "type": "data"})
        led.record_event("etl-bad", time.time(), "contract_violated", "load", 1, {
            "error": "contract etl.load.output violated",
            "failures": [{"contract": "etl.load.output", "column": "amount",
                          "check": "in_range(0, 100)", "failure_count": 2,
                          "failure_cases": [-5, 170]}]})
        led.finish_run("etl-bad", "failed", "load broke its contract")
    with serve(home, port=0) as srv:
        status, html = get(f"{srv.url}/runbooks/etl/contract_violation.html?step=load")
    assert status == 200 and "Contract violated: load in etl" in html
    assert "in_range(0, 100)" in html and "-5, 170" in html and "2 failing value" in html
    assert "corrupt-amount" in html and "etl-bad" in html


# -- run pages --------------------------------------------------------------------------
def test_run_list_and_run_page_link_each_other_and_the_runbooks(
        server: OnCallServer) -> None:
    status, runs = get(f"{server.url}/runs?pipeline=etl&status=failed&limit=10")
    assert status == 200
    assert runs.count('class="run"') == 4 and 'href="/runs/etl-new"' in runs
    assert "etl-good" not in runs
    status, page = get(f"{server.url}/runs/etl-new")
    assert status == 200 and "new failure" in page and 'id="nav"' in page
    assert 'href="/runbooks/etl/step_failed.html?run=etl-new&amp;step=load"' in page
    assert get(f"{server.url}/runs/etl-nope")[0] == 404
    assert get(f"{server.url}/runs?limit=0")[0] == 400
    assert get(f"{server.url}/runs?status=weird")[0] == 400


def test_user_text_is_escaped_everywhere(home: Path) -> None:
    evil = '<script>alert("x")</script>'
    with Ledger(home / "ledger.db") as led:
        failed_run(led, "evil-1", pipeline="evil", step="load", error=evil)
    with serve(home, port=0) as srv:
        post(f"{srv.url}/alerts/webhook", webhook([{
            **alert("firing", pipeline="evil"),
            "annotations": {"summary": evil, "description": evil}}]))
        for path in ("/runs", "/runs/evil-1", "/runbooks/evil/step_failed.html",
                     "/alerts", "/alerts/1", "/alerts/1/runbook", "/"):
            status, html = get(srv.url + path)
            assert status == 200, path
            assert "<script>" not in html, path
        assert "&lt;script&gt;" in get(srv.url + "/alerts")[1]


# -- the Alertmanager webhook -----------------------------------------------------------
def test_a_firing_alert_is_stored_with_its_runbook_and_resolution_marks_it(
        server: OnCallServer) -> None:
    status, answer = post(f"{server.url}/alerts/webhook", webhook([alert("firing")]))
    assert status == 200
    stored = json.loads(answer)["stored"]
    assert stored == [{"id": 1, "status": "firing", "run_id": "etl-new",
                       "url": f"{server.url}/alerts/1"}]
    _, page = get(f"{server.url}/alerts")
    assert 'class="alert firing"' in page and "ReliabilityStepFailed" in page
    assert 'href="/alerts/1/runbook"' in page and "reliability resume etl-new" in page
    _, book = get(f"{server.url}/alerts/1/runbook")
    assert "new failure" in book and "etl-new" in book
    _, one = get(f"{server.url}/alerts/1")
    assert "2030-01-01T00:00:00Z" in one and 'href="/runs/etl-new"' in one

    post(f"{server.url}/alerts/webhook", webhook([alert("resolved")]))
    _, page = get(f"{server.url}/alerts")
    assert 'class="alert resolved"' in page and "firing</td>" not in page
    assert "2030-01-01T01:00:00Z" in page
    _, book = get(f"{server.url}/alerts/1/runbook")
    assert "new failure" in book  # the runbook as it was when the alert fired


def test_firing_alerts_are_listed_before_resolved_ones(server: OnCallServer) -> None:
    post(f"{server.url}/alerts/webhook", webhook([
        alert("resolved", fingerprint="a", starts="2030-01-02T00:00:00Z"),
        alert("firing", fingerprint="b", step="extract", starts="2030-01-01T00:00:00Z")]))
    _, page = get(f"{server.url}/alerts")
    assert page.index('class="alert firing"') < page.index('class="alert resolved"')


@pytest.mark.parametrize(("body", "status"), [
    (b"", 400), (b"{", 400), (b"[]", 400), (b'{"alerts": [{"status": "burning"}]}', 400),
    (b'{"alerts": "no"}', 400)])
def test_bad_webhook_bodies_are_refused_with_a_reason(
        server: OnCallServer, body: bytes, status: int) -> None:
    code, html = post(f"{server.url}/alerts/webhook", body)
    assert code == status and "Alertmanager webhook" in html
    assert get(f"{server.url}/healthz") == (200, "ok\n")


def test_oversized_and_misdirected_posts_are_refused(server: OnCallServer) -> None:
    import socket

    from reliability.web.server import MAX_BODY

    for headers, status in ((f"Content-Length: {MAX_BODY + 1}", b" 413 "),
                            ("Transfer-Encoding: chunked", b" 411 "), ("", b" 411 ")):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(f"POST /alerts/webhook HTTP/1.1\r\nHost: x\r\n{headers}\r\n\r\n"
                         .encode())  # answered before any body is sent
            assert status in sock.recv(200).split(b"\r\n")[0]
    assert post(f"{server.url}/runs", b"{}")[0] == 405
    assert get(f"{server.url}/healthz")[0] == 200


def test_a_broken_runbook_template_never_loses_an_alert(home: Path, tmp_path: Path) -> None:
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "step_failed.md.j2").write_text("# {{ no_such_variable }}\n")
    with Ledger(home / "ledger.db") as led:
        failed_run(led, "etl-new")
    with serve(home, port=0, runbooks_dir=tmp_path / "runbooks") as srv:
        status, page = get(f"{srv.url}/runbooks/etl/step_failed.html?step=load")
        assert status == 500 and "no_such_variable" in page and "step_failed.md.j2" in page
        status, answer = post(f"{srv.url}/alerts/webhook", webhook([alert("firing")]))
        assert status == 200 and json.loads(answer)["stored"][0]["run_id"] == "etl-new"
        status, book = get(f"{srv.url}/alerts/1/runbook")
        assert status == 200 and "could not be rendered" in book and "no_such_variable" in book


# -- chaos reports and metrics ----------------------------------------------------------
def test_chaos_reports_are_listed_and_rendered(home: Path) -> None:
    from reliability.chaos.journal import FORMAT, Journal

    Journal({"format": FORMAT, "status": "passed", "score": 100.0, "seed": 7, "pipeline": "etl",
             "experiment": {"title": "kill <b>load</b>"}}).save(
        home / "chaos" / "journals" / "exp-1.json")
    (home / "chaos" / "journals" / "broken.json").write_text("{")
    with serve(home, port=0) as srv:
        status, page = get(f"{srv.url}/chaos")
        assert status == 200 and 'href="/chaos/exp-1"' in page
        assert "kill &lt;b&gt;load&lt;/b&gt;" in page and "broken" not in page
        status, report = get(f"{srv.url}/chaos/exp-1")
        assert status == 200 and "resilience score" in report
        assert get(f"{srv.url}/chaos/..%2Fledger")[0] == 404
        assert get(f"{srv.url}/chaos/missing")[0] == 404


def test_metrics_are_the_ledger_fed_exporter(server: OnCallServer) -> None:
    status, text = get(f"{server.url}/metrics")
    assert status == 200
    # the ledger's history: its series, counted from zero here (counting starts at start-up)
    assert ('reliability_steps_total{pipeline="etl",status="failed",step="load",'
            'trigger="manual"} 0.0') in text
    _, only = get(f"{server.url}/metrics?name[]=reliability_steps_total"
                  "&name[]=reliability_step_attempts_total")
    assert "reliability_steps_total{" in only and "reliability_step_attempts_total{" in only
    assert "reliability_error_budget_remaining_ratio" not in only


# -- bad requests -----------------------------------------------------------------------
_SEGMENT = st.text(st.characters(codec="utf-8"), max_size=30).map(
    lambda s: urllib.request.quote(s, safe=""))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(segments=st.lists(st.sampled_from(["runs", "runbooks", "alerts", "chaos", "metrics",
                                          "etl", "step_failed.html", "runbook", "1", "..",
                                          "%ff", "%2F", ""]) | _SEGMENT, max_size=5),
       query=st.text(max_size=60).map(lambda s: urllib.request.quote(s, safe="=&")),
       method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"]),
       body=st.binary(max_size=300) | st.sampled_from([
           b'{"alerts": [{"status": "firing", "labels": {}, "startsAt": ""}]}',
           b'{"alerts": [' + b'{}, ' * 5 + b"{}]}", b'{"alerts": [null]}']))
def test_bad_paths_queries_and_bodies_never_bring_the_server_down(
        server: OnCallServer, segments: list[str], query: str, method: str,
        body: bytes) -> None:
    path = "/" + "/".join(segments) + (f"?{query}" if query else "")
    data = body if method in ("POST", "PUT") else None
    req = urllib.request.Request(server.url + path, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            code = resp.status
    except urllib.error.HTTPError as err:
        err.close()
        code = err.code
    assert code < 500, (method, path, body)
    assert get(f"{server.url}/healthz") == (200, "ok\n")


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=400) | st.sampled_from([
    b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n",
    b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
    b"POST /alerts/webhook HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    b"POST /alerts/webhook HTTP/1.1\r\nContent-Length: 10\r\n\r\n{",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"]))
def test_raw_garbage_on_the_socket_never_brings_the_server_down(
        server: OnCallServer, raw: bytes) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        try:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
            answer = sock.recv(100)
        except OSError:  # the server may close a connection it will not serve
            answer = b""
    assert not answer.startswith(b"HTTP/1.1 5") and not answer.startswith(b"HTTP/1.0 5")
    assert get(f"{server.url}/healthz") == (200, "ok\n")
