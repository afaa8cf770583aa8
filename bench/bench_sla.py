"""Benchmarks of the SLA monitor's metrics.

1. ``/metrics`` scrape time with 100 pipelines x 20 steps of series (target <= 20 ms),
   as ``generate_latest`` and as a real HTTP GET against ``serve_metrics``.
2. Cost per step event of the metrics subscriber (and of the whole SLA monitor) versus a
   no-op subscriber on the same EventBus (target <= 20 us).

Run: ``python bench/bench_sla.py``.
"""

from __future__ import annotations

import statistics
import time
import urllib.request

from prometheus_client import CollectorRegistry, generate_latest

from reliability.events import Event, EventBus, EventKind
from reliability.sla import SLA, PipelineMetrics, SLAMonitor, SLASet, serve_metrics

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


def bench_scrape() -> None:
    reg = CollectorRegistry()
    metrics = PipelineMetrics(registry=reg)
    for p in range(PIPELINES):
        for e in run_events(f"pipeline_{p:03d}", f"r{p}", STEPS):
            metrics(e)
        metrics(Event(K.SLA_BREACHED, f"pipeline_{p:03d}", f"r{p}", "step_01",
                      details={"sla": "max_duration"}))
    series = sum(len(m.samples) for m in reg.collect())
    times = []
    for _ in range(15):
        t0 = time.perf_counter()
        body = generate_latest(reg)
        times.append(time.perf_counter() - t0)
    server, port = serve_metrics(reg)
    http = []
    try:
        for _ in range(15):
            t0 = time.perf_counter()
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
            http.append(time.perf_counter() - t0)
    finally:
        server.close()
    gen, get = statistics.median(times) * 1000, statistics.median(http) * 1000
    print(f"scrape: {PIPELINES} pipelines x {STEPS} steps = {series} samples, "
          f"{len(body) / 1024:.0f} KiB")
    print(f"  generate_latest median {gen:.1f} ms, HTTP GET median {get:.1f} ms "
          f"(target <= 20 ms: {'OK' if get <= 20 else 'OVER'}; ratio {get / 20:.2f}x target)")


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
