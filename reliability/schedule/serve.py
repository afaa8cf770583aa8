"""The long-lived scheduler process: live triggers, an HTTP trigger endpoint, metrics.

HTTP (loopback by default; JSON in, JSON out)::

    POST /trigger/<schedule>        body optional: {"interval": "START/END", "reprocess": "failed"}
        202 {"started": true, ...}  a run was claimed and started
        409 {"started": false, "reason": "duplicate trigger ignored: ..."}
        400 {"error": ...}          a body, key, value or query string it does not understand
        404 {"error": ..., "schedules": [...]}   no HTTP-triggerable schedule of that name
    GET  /schedules                 next fire times and their data intervals
    GET  /healthz                   {"ok": true}

Anything else gets a JSON ``{"error": ...}`` too: 404 (path), 405 (method, with ``Allow``),
411 (a chunked body), 413 (a body over 64 KiB), 400 (a malformed request). Nothing a
client sends is ignored silently, and no request goes unanswered.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

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


MAX_BODY = 65536
"""Largest trigger body read, in bytes (larger: 413)."""
BODY_KEYS = ("interval", "reprocess")
_EXAMPLE = '{"interval": "START/END", "reprocess": "none"}'


class _BadRequest(Exception):
    """A request the endpoint does not understand: answered with ``status`` and the message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _cut(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _BadRequest(f"key {_cut(key)!r} appears twice in the body; send it once")
        out[key] = value
    return out


def parse_trigger_body(raw: bytes) -> tuple[str | None, str]:
    """``(interval, reprocess)`` from a trigger body; raise _BadRequest for anything else."""
    if not raw.strip():
        return None, "none"
    try:
        data = json.loads(raw, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise _BadRequest(f"body is nested too deeply; send a flat object, e.g. {_EXAMPLE}"
                          ) from None
    except ValueError as exc:  # not JSON, not UTF-8
        raise _BadRequest(f"body is not JSON ({_cut(str(exc), 120)}); send e.g. {_EXAMPLE}"
                          ) from None
    if not isinstance(data, dict):
        raise _BadRequest(f"body must be a JSON object, e.g. {_EXAMPLE}")
    unknown = [k for k in data if k not in BODY_KEYS]
    if unknown:
        names = ", ".join(repr(_cut(k)) for k in unknown[:5])
        raise _BadRequest(f"unknown key(s) {names} in the body; it takes only 'interval' "
                          f"(START/END) and 'reprocess' (none, failed or all), e.g. {_EXAMPLE}")
    interval, reprocess = data.get("interval"), data.get("reprocess", "none")
    if not isinstance(interval, str | None) or not isinstance(reprocess, str):
        raise _BadRequest(f"'interval' and 'reprocess' must be strings, e.g. {_EXAMPLE}")
    return interval or None, reprocess


def _handler(sched: Scheduler) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = 15.0  # a client stalled mid-request is dropped, never holds a thread

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http: %s", format % args)

        def _send(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def send_error(self, code: int, message: str | None = None,
                       explain: str | None = None) -> None:
            """The base class's own errors (malformed request line, headers) as JSON."""
            self.close_connection = True
            self._no_http09()
            try:
                phrase = HTTPStatus(code).phrase
            except ValueError:
                phrase = "error"
            self._send(code, {"error": _cut(message or phrase, 200)})

        def _no_http09(self) -> None:
            # answer with a status line and headers even to an HTTP/0.9-looking request
            if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
                self.request_version = "HTTP/1.0"

        def handle_one_request(self) -> None:
            try:
                self.raw_requestline = self.rfile.readline(65537)
                if len(self.raw_requestline) > 65536:
                    self.requestline = self.request_version = self.command = ""
                    self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                    return
                if not self.raw_requestline:
                    self.close_connection = True
                    return
                if not self.parse_request():
                    return
                self._no_http09()
                self._route()
                self.wfile.flush()
            except TimeoutError:
                self.close_connection = True

        def _route(self) -> None:
            if self.path.startswith("/"):  # "//x" is a path here, not a host
                path, _, query = self.path.partition("?")
            else:
                parts = urlsplit(self.path)
                path, query = parts.path, parts.query
            if path in ("/healthz", "/schedules"):
                if self.command not in ("GET", "HEAD"):
                    self._send(405, {"error": f"{path} answers GET only"}, {"Allow": "GET"})
                elif path == "/healthz":
                    self._send(200, {"ok": True})
                else:
                    self._send(200, schedules_json(sched))
            elif path.startswith("/trigger/"):
                if self.command != "POST":
                    self._send(405, {"error": "use POST /trigger/<schedule>"}, {"Allow": "POST"})
                    return
                self._trigger(unquote(path[len("/trigger/"):]), query)
            else:
                self._send(404, {"error": f"no route {_cut(path)}; use POST "
                                          "/trigger/<schedule>, GET /schedules or GET /healthz"})

        def _trigger(self, name: str, query: str) -> None:
            s = sched.schedules.get(name)
            try:
                if query:
                    raise _BadRequest(
                        f"query parameters are not read (got {_cut(query)!r}); send the "
                        f"interval and reprocess policy in the JSON body, e.g. {_EXAMPLE}")
                raw = self._body()
            except _BadRequest as exc:
                self.close_connection = True  # an unread body must not become the next request
                self._send(exc.status, {"error": str(exc)})
                return
            if s is None or not s.http:
                self._send(404, {"error": f"no HTTP-triggerable schedule {_cut(name)!r}",
                                 "schedules": sorted(k for k, v in sched.schedules.items()
                                                     if v.http)})
                return
            try:
                text, policy = parse_trigger_body(raw)
                iv = DataInterval.parse(text) if text else None
                reprocess = Reprocess.parse(policy)
                out = sched.trigger(name, iv, source="http", reprocess=reprocess)
            except _BadRequest as exc:
                self._send(exc.status, {"error": str(exc)})
                return
            except (ReliabilityError, ValueError) as exc:
                self._send(400, {"error": _cut(str(exc), 400)})
                return
            except ArithmeticError:  # a date at the edge of the calendar
                self._send(400, {"error": f"interval {_cut(text or '')!r} is out of range; "
                                          "use dates between years 2 and 9998"})
                return
            except Exception:
                log.exception("trigger of %s failed", name)
                self._send(500, {"error": "the trigger failed; see the scheduler's log"})
                return
            self._send(202 if out.started else 409, out.to_dict())

        def _body(self) -> bytes:
            if "Transfer-Encoding" in self.headers:
                raise _BadRequest("send the body with a Content-Length header; chunked "
                                  "bodies are not read", 411)
            length = self.headers.get("Content-Length") or "0"
            if not length.isascii() or not length.isdigit():
                raise _BadRequest(f"Content-Length {_cut(length)!r} is not a byte count")
            n = int(length)
            if n > MAX_BODY:
                raise _BadRequest(f"body of {n} bytes is over the {MAX_BODY}-byte limit", 413)
            return self.rfile.read(n) if n else b""

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
        # A long-lived scheduler waits for a final scrape only where it knows the scrape
        # interval; otherwise SIGTERM would wait out the cap for a scraper that may be gone.
        server.close(final_scrape=None if server.scrape_interval() is not None else 0)

    return stop, server.port
