"""Benchmarks of the SLA monitor's metrics.

1. ``/metrics`` scrape time with 100 pipelines x 20 steps of series (target <= 20 ms):
   the cached exposition text (unchanged, and after one run's events) and a real HTTP GET
   against ``serve_metrics``, against the baseline of prometheus-client's
   ``generate_latest`` rendering every sample of the same registry.
2. Cost per step event of the metrics subscriber (and of the whole SLA monitor) versus a
   no-op subscriber on the same EventBus (target <= 20 us).

Run: ``python bench/bench_sla.py``.
"""

from __future__ import annotations

import statistics
import time
import urllib.request
from collections.abc import Callable

from prometheus_client import CollectorRegistry, generate_latest

from reliability.events import Event, EventBus, EventKind
from reliability.sla import SLA, PipelineMetrics, SLAMonitor, SLASet, serve_metrics
from reliability.sla.exposition import render_registry

PIPELINES, STEPS = 100, 20
K = EventKind


def run_events(pipeline: str, run_id: str, steps: int) -> list[Event]:
    names = [f"step_{i:02d}" for i in range(steps)]
    out = [Event(K.RUN_STARTED, pipeline, run_id, details={"steps": names})]
    for i, s in enumerate(names):
        out.append(Event(K.STEP_STARTED, pipeline, run_id, s, 1, details={"worker_pid": 1}))
        if i % 7 == 0:
            out.append(Event(K.STEP_RETRYING, pipeline, run_id, s, 1,
                             details={"error_type": "Boom"}))
            out.append(Event(K.STEP_STARTED, pipeline, run_id, s, 2))
        out.append(Event(K.STEP_SUCCEEDED, pipeline, run_id, s, 1, duration=3.0 + i,
                         details={"output_hash": "x", "size": 1}))
    out.append(Event(K.RUN_SUCCEEDED, pipeline, run_id, duration=100.0))
    return out


def median_ms(fn: Callable[[], object], rounds: int = 15) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def http_get(url: str, gzipped: bool = False) -> bytes:
    headers = {"Accept-Encoding": "gzip"} if gzipped else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
        return bytes(r.read())


def bench_scrape() -> None:
    reg = CollectorRegistry()
    metrics = PipelineMetrics(registry=reg)
    for p in range(PIPELINES):
        for e in run_events(f"pipeline_{p:03d}", f"r{p}", STEPS):
            metrics(e)
        metrics(Event(K.SLA_BREACHED, f"pipeline_{p:03d}", f"r{p}", "step_01",
                      details={"sla": "max_duration"}))
    t0 = time.perf_counter()
    body = render_registry(reg)  # every series is new: renders all of them
    first = (time.perf_counter() - t0) * 1000
    series = sum(len(m.samples) for m in reg.collect())
    base = median_ms(lambda: generate_latest(reg), 5)
    fast = median_ms(lambda: render_registry(reg))
    runs = iter(range(10_000))

    def one_run() -> None:  # one pipeline finished a run since the last scrape
        r = next(runs)
        for e in run_events(f"pipeline_{r % PIPELINES:03d}", f"again{r}", STEPS):
            metrics(e)

    changed = median_ms(lambda: (one_run(), render_registry(reg)))
    server, port = serve_metrics(reg)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        get = median_ms(lambda: http_get(url))
        get_run = median_ms(lambda: (one_run(), http_get(url)))
        get_gz = median_ms(lambda: (one_run(), http_get(url, gzipped=True)))
    finally:
        server.close()
    print(f"scrape: {PIPELINES} pipelines x {STEPS} steps = {series} samples, "
          f"{len(body) / 1024:.0f} KiB (no _created series)")
    print(f"  baseline generate_latest (prometheus-client renders every sample) median "
          f"{base:.1f} ms")
    print(f"  cached text: unchanged {fast:.2f} ms ({base / fast:.0f}x faster), after one "
          f"run's events {changed:.2f} ms ({base / changed:.0f}x), first full render "
          f"{first:.1f} ms")
    worst = max(get, get_run, get_gz)
    print(f"  HTTP GET median: unchanged {get:.1f} ms, after one run's events {get_run:.1f} ms, "
          f"the same gzipped (as Prometheus asks) {get_gz:.1f} ms")
    print(f"  slowest HTTP GET {worst:.1f} ms: target <= 20 ms "
          f"{'OK' if worst <= 20 else 'OVER'} ({worst / 20:.2f}x target, "
          f"{base / worst:.0f}x faster than the baseline)")


def per_event(bus: EventBus, events: list[Event], rounds: int) -> float:
    t0 = time.perf_counter()
    for _ in range(rounds):
        for e in events:
            bus.publish(e)
    return (time.perf_counter() - t0) / (rounds * len(events))


def bench_events() -> None:
    events = [e for r in range(5) for e in run_events("bench", f"run{r}", STEPS)]
    rounds = 200
    noop_bus = EventBus()
    noop_bus.subscribe(lambda e: None)
    metrics_bus = EventBus()
    PipelineMetrics(registry=CollectorRegistry()).attach(metrics_bus)
    monitor_bus = EventBus()
    slas = SLASet("bench", [SLA(max_duration=3600),
                            *[SLA(step=f"step_{i:02d}", max_duration=3600) for i in range(STEPS)]])
    monitor = SLAMonitor(slas, monitor_bus, registry=CollectorRegistry()).start()
    try:
        for bus in (noop_bus, metrics_bus, monitor_bus):  # warm up label caches
            per_event(bus, events, 2)
        base = min(per_event(noop_bus, events, rounds) for _ in range(3))
        met = min(per_event(metrics_bus, events, rounds) for _ in range(3))
        mon = min(per_event(monitor_bus, events, rounds) for _ in range(3))
    finally:
        monitor.stop()
    over_m, over_s = (met - base) * 1e6, (mon - base) * 1e6
    print(f"per event ({len(events) * rounds} events): no-op subscriber {base * 1e6:.2f} us")
    print(f"  PipelineMetrics {met * 1e6:.2f} us -> overhead {over_m:.2f} us/event "
          f"(target <= 20 us: {'OK' if over_m <= 20 else 'OVER'}; {met / base:.1f}x no-op)")
    print(f"  SLAMonitor (metrics + live timers) {mon * 1e6:.2f} us -> overhead "
          f"{over_s:.2f} us/event ({mon / base:.1f}x no-op)")


if __name__ == "__main__":
    bench_scrape()
    bench_events()
