"""The long-lived scheduler process: live triggers, an HTTP trigger endpoint, metrics.

HTTP (loopback by default)::

    POST /trigger/<schedule>        body optional: {"interval": "START/END", "reprocess": "failed"}
        202 {"started": true, ...}  a run was claimed and started
        409 {"started": false, "reason": "duplicate trigger ignored: ..."}
    GET  /schedules                 next fire times and their data intervals
    GET  /healthz
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from reliability.errors import ReliabilityError
from reliability.pipeline import DataInterval
from reliability.schedule.scheduler import Scheduler, TriggerOutcome
from reliability.schedule.state import Reprocess

__all__ = ["ScheduleMetrics", "TriggerServer", "schedules_json"]

log = logging.getLogger("reliability.schedule")


def schedules_json(sched: Scheduler, count: int = 3) -> list[dict[str, Any]]:
    out = []
    for name, s in sched.schedules.items():
        out.append({
            "name": name, "pipeline": s.pipeline, "timetable": s.timetable.describe(),
            "catchup": s.catchup.policy.value, "fire_on_time": s.fire_on_time,
            "next": [{"fire": s.timetable.local(f).isoformat(), "interval": iv.key()}
                     for f, iv in sched.next_fires(name, count)]})
    return out


class TriggerServer:
    """A small threaded HTTP server that turns POSTs into :meth:`Scheduler.trigger` calls."""

    def __init__(self, sched: Scheduler, host: str = "127.0.0.1", port: int = 0) -> None:
        handler = _handler(sched)
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        addr = self.httpd.server_address
        self.host, self.port = str(addr[0]), int(addr[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="trigger-http",
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> TriggerServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler(sched: Scheduler) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http: %s", format % args)

        def _send(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            path = self.path.partition("?")[0]
            if path == "/healthz":
                self._send(200, {"ok": True})
            elif path == "/schedules":
                self._send(200, schedules_json(sched))
            else:
                self._send(404, {"error": f"no route {self.path}; use POST /trigger/<name>"})

        def do_POST(self) -> None:
            prefix, path = "/trigger/", self.path.partition("?")[0]
            if not path.startswith(prefix):
                self._send(404, {"error": f"no route {path}; use POST /trigger/<name>"})
                return
            name = path[len(prefix):]
            s = sched.schedules.get(name)
            if s is None or not s.http:
                self._send(404, {"error": f"no HTTP-triggerable schedule {name!r}",
                                 "schedules": sorted(k for k, v in sched.schedules.items()
                                                     if v.http)})
                return
            try:
                body = self._body()
                text, policy = body.get("interval"), body.get("reprocess", "none")
                if not isinstance(text, str | None) or not isinstance(policy, str):
                    raise ValueError("'interval' and 'reprocess' must be strings, e.g. "
                                     "{\"interval\": \"START/END\", \"reprocess\": \"failed\"}")
                iv = DataInterval.parse(text) if text else None
                reprocess = Reprocess.parse(policy)
                out = sched.trigger(name, iv, source="http", reprocess=reprocess)
            except (ReliabilityError, ValueError) as exc:
                self._send(400, {"error": str(exc)})
                return
            self._send(202 if out.started else 409, out.to_dict())

        def _body(self) -> dict[str, Any]:
            length = self.headers.get("Content-Length") or "0"
            if not length.isdigit() or int(length) > 65536:
                raise ValueError(f"Content-Length {length!r} must be a byte count up to 65536")
            n = int(length)
            if not n:
                return {}
            try:
                data = json.loads(self.rfile.read(n) or b"{}")
            except ValueError as exc:
                raise ValueError(f"body is not JSON ({exc}); send e.g. "
                                 "{\"interval\": \"START/END\"}") from None
            if not isinstance(data, dict):
                raise ValueError("body must be a JSON object, e.g. {\"interval\": \"A/B\"}")
            return data

    return Handler


class ScheduleMetrics:
    """Prometheus metrics of the scheduler itself (fires by outcome, next fire time)."""

    def __init__(self, sched: Scheduler, registry: Any = None) -> None:
        from prometheus_client import REGISTRY, Counter, Gauge

        reg = registry if registry is not None else REGISTRY
        self.triggers = Counter(
            "reliability_schedule_triggers_total",
            "Triggers of a schedule by outcome (started, duplicate, none_due)",
            ["schedule", "outcome"], registry=reg)
        self.next_fire = Gauge(
            "reliability_schedule_next_fire_timestamp_seconds",
            "Unix time of the schedule's next fire", ["schedule"], registry=reg)
        self.freshness = Gauge(
            "reliability_schedule_freshness_threshold_seconds",
            "Data is stale when its newest interval ended longer ago than this",
            ["schedule"], registry=reg)
        self.sched = sched
        for name, s in sched.schedules.items():
            self.triggers.labels(name, "started")
            threshold = s.freshness_threshold()
            if threshold is not None:
                self.freshness.labels(name).set(threshold)
        sched.on_trigger(self.observe)
        self.refresh()

    def observe(self, out: TriggerOutcome) -> None:
        kind = "started" if out.started else ("none_due" if out.interval is None
                                              else "duplicate")
        self.triggers.labels(out.schedule, kind).inc()
        self.refresh()

    def refresh(self) -> None:
        for name in self.sched.schedules:
            nxt = self.sched.next_fires(name, 1)
            if nxt:
                self.next_fire.labels(name).set(nxt[0][0].timestamp())


def start_metrics(sched: Scheduler, port: int, host: str = "127.0.0.1",
                  bus: Any = None) -> tuple[Callable[[], None], int]:
    """Serve /metrics on ``host:port`` (0: a free port): the pipelines' metrics from ``bus``
    (:class:`reliability.sla.PipelineMetrics`) and the scheduler's own. Returns (stop, port).
    """
    from prometheus_client import CollectorRegistry

    from reliability.sla import PipelineMetrics, serve_metrics

    registry = CollectorRegistry()
    ScheduleMetrics(sched, registry)
    pipeline_metrics = PipelineMetrics(registry=registry)
    detach = pipeline_metrics.attach(bus) if bus is not None else (lambda: None)
    server = serve_metrics(registry, host=host, port=port)

    def stop() -> None:
        detach()
        server.close()

    return stop, server.port
