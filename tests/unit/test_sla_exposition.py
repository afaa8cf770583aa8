"""The cached ``/metrics`` text: same samples as prometheus-client, invalidated on change."""

from __future__ import annotations

import gzip
import math
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from reliability.errors import DefinitionError
from reliability.events import Event, EventKind
from reliability.sla import PipelineMetrics, push_metrics, serve_metrics
from reliability.sla.exposition import Family, SeriesCollector, render_registry

K = EventKind
NASTY = 'we\\ird "name"\nline2'  # backslash, double quote, newline in a label value
SampleKey = tuple[str, str, str, str, tuple[tuple[str, str], ...]]


def feed(metrics: PipelineMetrics, pipeline: str, run_id: str = "r1") -> None:
    steps = ["a", "b", NASTY]
    events = [Event(K.RUN_STARTED, pipeline, run_id, details={"steps": steps})]
    for i, step in enumerate(steps):
        events += [Event(K.STEP_STARTED, pipeline, run_id, step, 1),
                   Event(K.STEP_RETRYING, pipeline, run_id, step, 1),
                   Event(K.STEP_SUCCEEDED, pipeline, run_id, step, 2, duration=0.5 + 40 * i,
                         time=1.7e9 + i)]
    events += [
        Event(K.WORKER_LOST, pipeline, run_id, None, details={"attempts": 2}),
        Event(K.CONTRACT_VIOLATED, pipeline, run_id, "b", 2, details={
            "quarantined": True, "failures": [{"contract": NASTY, "check": "ge"}]}),
        Event(K.FAULT_INJECTED, pipeline, run_id, "a", 1, details={"type": "latency"}),
        Event(K.SLA_BREACHED, pipeline, run_id, "a", details={"sla": "max_duration"}),
        Event(K.RUN_SUCCEEDED, pipeline, run_id, duration=1e5, time=1.7e9 + 10),
        Event(K.RUN_STARTED, pipeline, run_id + "x"),
        Event(K.RUN_CANCELLED, pipeline, run_id + "x", duration=30_000.0),  # +Inf bucket
    ]
    for e in events:
        metrics(e)
    metrics.set_deadline(pipeline, 1.7e9 + 3600)
    metrics.set_budget(pipeline, None, 0.25)
    metrics.set_budget(pipeline, "a", -0.5)


def samples(text: bytes) -> dict[SampleKey, float]:
    """Every sample but ``_created``, keyed by family name/type/help, name and labels."""
    out: dict[SampleKey, float] = {}
    for fam in text_string_to_metric_families(text.decode()):
        for s in fam.samples:
            if not s.name.endswith("_created"):
                key = (fam.name, fam.type, fam.documentation, s.name,
                       tuple(sorted(s.labels.items())))
                assert key not in out, f"duplicate sample {key}"
                out[key] = s.value
    return out


@pytest.fixture
def fed() -> tuple[CollectorRegistry, PipelineMetrics]:
    reg = CollectorRegistry()
    metrics = PipelineMetrics(registry=reg)
    feed(metrics, "p")
    feed(metrics, NASTY)
    return reg, metrics


def test_fast_text_matches_generate_latest_sample_for_sample(
        fed: tuple[CollectorRegistry, PipelineMetrics]) -> None:
    reg, _ = fed
    fast, slow = render_registry(reg), generate_latest(reg)
    expected = samples(slow)
    assert samples(fast) == expected
    assert len(expected) > 100
    # the escapes round-trip: the parser gives back the raw label value
    assert ("reliability_contract_violations", "counter", "Failed contract checks.",
            "reliability_contract_violations_total",
            (("check", "ge"), ("contract", NASTY), ("pipeline", "p"), ("step", "b"),
             ("trigger", "manual"))) in expected
    # byte for byte the same lines, only the order of series may differ
    assert sorted(fast.splitlines()) == sorted(slow.splitlines())


def test_histograms_are_cumulative_and_headers_appear_once(
        fed: tuple[CollectorRegistry, PipelineMetrics]) -> None:
    reg, _ = fed
    text = render_registry(reg).decode()
    for name in ("reliability_step_duration_seconds", "reliability_runs_total"):
        assert text.count(f"# TYPE {name} ") == 1 and text.count(f"# HELP {name} ") == 1
    assert "_created" not in text
    fam = next(f for f in text_string_to_metric_families(text)
               if f.name == "reliability_run_duration_seconds")
    cancelled = [s for s in fam.samples if s.labels.get("status") == "cancelled"
                 and s.labels["pipeline"] == "p"]
    buckets = [s for s in cancelled if s.name.endswith("_bucket")]
    counts = [s.value for s in buckets]
    assert counts == sorted(counts) and buckets[-1].labels["le"] == "+Inf"
    assert counts[-1] == 1 and counts[-2] == 0  # 30000 s is above the last bound
    by_name = {s.name: s.value for s in cancelled if not s.name.endswith("_bucket")}
    assert by_name == {"reliability_run_duration_seconds_count": 1.0,
                       "reliability_run_duration_seconds_sum": 30_000.0}


def test_a_change_after_a_scrape_shows_in_the_next_scrape(
        fed: tuple[CollectorRegistry, PipelineMetrics]) -> None:
    reg, metrics = fed
    first = render_registry(reg)
    assert render_registry(reg) == first  # nothing changed: the same bytes
    metrics(Event(K.STEP_SUCCEEDED, "p", "r2", "a", 1, duration=2.0, time=1.8e9))
    metrics(Event(K.SLA_BREACHED, "new", "r9", "z", details={"sla": "freshness"}))
    metrics.set_budget("p", None, 0.125)
    second = render_registry(reg)
    before, after = samples(first), samples(second)
    assert after == samples(generate_latest(reg))
    changed = {k[3:]: (before.get(k), v) for k, v in after.items() if before.get(k) != v}
    p_a = (("pipeline", "p"), ("step", "a"))
    run_a = (*p_a, ("trigger", "manual"))
    ok_a = (("pipeline", "p"), ("status", "succeeded"), ("step", "a"), ("trigger", "manual"))
    buckets_from_5s = ("5.0", "15.0", "30.0", "60.0", "120.0", "300.0", "600.0", "1200.0",
                       "1800.0", "3600.0", "7200.0", "14400.0", "21600.0", "+Inf")
    expected: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[float | None, float]] = {
        ("reliability_step_duration_seconds_bucket", (("le", le), *run_a)): (1.0, 2.0)
        for le in buckets_from_5s}  # the 0.5 s observation sits in "1.0" already
    assert changed == {
        **expected,
        ("reliability_step_attempts_total", ok_a): (1.0, 2.0),
        ("reliability_steps_total", ok_a): (1.0, 2.0),
        ("reliability_step_duration_seconds_count", run_a): (1.0, 2.0),
        ("reliability_step_duration_seconds_sum", run_a): (0.5, 2.5),
        ("reliability_step_last_success_timestamp_seconds", p_a): (1.7e9, 1.8e9),
        ("reliability_sla_breaches_total",
         (("pipeline", "new"), ("sla", "freshness"), ("step", "z"), ("trigger", "manual"))):
        (None, 1.0),
        ("reliability_error_budget_remaining_ratio",
         (("pipeline", "p"), ("step", ""))): (0.25, 0.125),
    }


def test_other_collectors_are_served_too_and_keep_their_created_series() -> None:
    reg = CollectorRegistry()
    other = Counter("scheduler_fires", "Fires.", ["schedule"], registry=reg)
    other.labels("nightly").inc(3)
    metrics = PipelineMetrics(registry=reg)
    feed(metrics, "p")
    text = render_registry(reg)
    assert samples(text) == samples(generate_latest(reg))
    assert b'scheduler_fires_total{schedule="nightly"} 3.0' in text
    assert b"scheduler_fires_created" in text  # no global disable_created_metrics()
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        PipelineMetrics(registry=reg)  # describe() names our families
    reg.unregister(metrics.collector)
    assert b"reliability_" not in render_registry(reg)


def test_collector_is_a_prometheus_collector_with_proper_families(
        fed: tuple[CollectorRegistry, PipelineMetrics]) -> None:
    reg, metrics = fed
    collector: Collector = metrics.collector  # the structural protocol (checked by mypy)
    kinds = {f.name: f.type for f in collector.collect()}
    assert kinds["reliability_runs"] == "counter"
    assert kinds["reliability_step_duration_seconds"] == "histogram"
    assert kinds["reliability_runs_in_progress"] == "gauge"
    assert reg.get_sample_value("reliability_runs_in_progress",
                                {"pipeline": "p", "trigger": "manual"}) == 0


def test_family_rejects_bad_types_and_le_labels() -> None:
    with pytest.raises(DefinitionError, match="summary"):
        Family("x", "X.", "summary", [])
    with pytest.raises(DefinitionError, match="'le' is reserved"):
        Family("x_seconds", "X.", "histogram", ["le"], (1.0,))


def test_unlabelled_family_and_nan_observation() -> None:
    reg = CollectorRegistry()
    hist = Family("job_seconds", "Job time.", "histogram", [], (1.0, 2.0))
    gauge = Family("job_up", "Up.", "gauge", [])
    collector = SeriesCollector([hist, gauge])
    reg.register(collector)
    with collector.lock:
        hist.observe((), 1.5)
        hist.observe((), float("nan"))
        gauge.set((), 1.0)
    text = render_registry(reg)
    assert b'job_seconds_bucket{le="2.0"} 1.0\n' in text and b"job_up 1.0\n" in text
    got, want = samples(text), samples(generate_latest(reg))
    assert got.keys() == want.keys()
    assert all(got[k] == want[k] or (math.isnan(got[k]) and math.isnan(want[k])) for k in got)


def test_events_and_scrapes_from_several_threads_lose_nothing() -> None:
    reg = CollectorRegistry()
    metrics = PipelineMetrics(registry=reg)
    per_thread, threads = 400, 4
    stop = threading.Event()

    def publish(n: int) -> None:
        for i in range(per_thread):
            metrics(Event(K.STEP_SUCCEEDED, f"p{n}", f"r{i}", "s", 1, duration=1.0, time=i))
            metrics.set_budget(f"p{n}", None, i / per_thread)

    def scrape() -> None:
        while not stop.is_set():
            samples(render_registry(reg))  # always parseable mid-update

    scraper = threading.Thread(target=scrape)
    scraper.start()
    workers = [threading.Thread(target=publish, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stop.set()
    scraper.join()
    final = samples(render_registry(reg))
    for n in range(threads):
        p = (("pipeline", f"p{n}"), ("step", "s"), ("trigger", "manual"))
        assert final["reliability_step_duration_seconds", "histogram",
                     "Duration of successful step attempts.",
                     "reliability_step_duration_seconds_count", p] == per_thread
    assert final == samples(generate_latest(reg))


# -- the HTTP endpoint -------------------------------------------------------------------
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                     "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


def get(url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), bytes(exc.read())


def test_served_as_text_0_0_4_to_prometheus_gzipped_or_not(
        fed: tuple[CollectorRegistry, PipelineMetrics]) -> None:
    reg, _ = fed
    with serve_metrics(reg) as server:
        status, headers, body = get(server.url, Accept=PROMETHEUS_ACCEPT)
        assert status == 200
        assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert samples(body) == samples(generate_latest(reg))
        status, headers, gz = get(server.url, Accept=PROMETHEUS_ACCEPT,
                                  **{"Accept-Encoding": "gzip"})
        assert headers["Content-Encoding"] == "gzip" and gzip.decompress(gz) == body
        status, headers, om = get(server.url, Accept="application/openmetrics-text")
        assert headers["Content-Type"].startswith("application/openmetrics-text")
        assert om.endswith(b"# EOF\n")
        status, _, only = get(server.url + "?name[]=reliability_runs_total")
        assert {k[3] for k in samples(only)} == {"reliability_runs_total"}
        status, headers, _ = get(server.url.replace("/metrics", "/anything"))
        assert status == 200
        req = urllib.request.Request(server.url, data=b"x", method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=5)
        with err.value:
            assert err.value.code == 405 and b"use OPTIONS or GET" in err.value.read()


class _Gateway(BaseHTTPRequestHandler):
    bodies: list[tuple[str, bytes]] = []

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).bodies.append((self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    bodies: list[tuple[str, bytes]] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("GW", (_Gateway,), {"bodies": bodies}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_port}", bodies
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_push_to_a_gateway_sends_the_same_samples(
        fed: tuple[CollectorRegistry, PipelineMetrics],
        gateway: tuple[str, list[tuple[str, bytes]]]) -> None:
    reg, _ = fed
    address, bodies = gateway
    push_metrics(reg, address, pipeline="p")
    [(path, body)] = bodies
    assert path == "/metrics/job/reliability/pipeline/p"
    assert samples(body) == samples(render_registry(reg))
