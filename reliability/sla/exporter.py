"""Getting metrics to Prometheus: a ``/metrics`` endpoint, or a push for short batch runs.

Which fits when:

* **Long-lived exporter** (:func:`serve_metrics`) -- a process that outlives single runs:
  the scheduler, a service running pipelines on demand, or ``reliability sla serve``.
  Prometheus scrapes it; counters keep rising across runs, so ``rate()`` and burn-rate
  alerts work. Binds to loopback (127.0.0.1) unless told otherwise. It also serves a single
  run (``reliability run --metrics-port``): closing it waits for Prometheus to scrape the
  final values once, so the run's last failure still alerts.
* **Pushgateway** (:func:`push_metrics`) -- a one-shot ``reliability run`` from cron/CI that
  ends before Prometheus would scrape it. Push the registry once, at the end of the run,
  grouped by pipeline (the job's last state replaces the previous one; no run id in the
  grouping key, or the gateway grows without bound). Timestamps such as
  ``reliability_last_success_timestamp_seconds`` stay meaningful between pushes.
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from reliability._lazy import require
from reliability.errors import SLAError

__all__ = ["MetricsServer", "push_metrics", "render_metrics", "serve_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
FINAL_SCRAPE_MAX = 65.0  # seconds close() waits for a last scrape at most (covers 1m intervals)
_PLAIN = ("text/plain", "text/*", "*/*")


def _accepts_plain_text(accept: str | None) -> bool:
    """True unless the client lists media types and none of them is plain text."""
    if not accept or not accept.strip():
        return True
    return any(part.split(";")[0].strip().lower() in _PLAIN for part in accept.split(","))


def _gzip_accepted(accept_encoding: str | None) -> bool:
    return any(part.split(";")[0].strip().lower() == "gzip"
               for part in (accept_encoding or "").split(","))


def render_metrics(registry: Any, accept: str | None = None,
                   params: Mapping[str, list[str]] | None = None) -> tuple[bytes, str]:
    """The ``/metrics`` body for ``registry`` and its content type.

    Text format 0.0.4 from the cached series text of our collectors (see
    :mod:`reliability.sla.exposition`) whenever the client accepts plain text -- Prometheus
    always lists it. A client accepting only OpenMetrics, or a ``name[]`` filter, gets
    prometheus-client's own rendering.
    """
    pc = require("prometheus_client", "prometheus", "the metrics exporter")
    names = (params or {}).get("name[]")
    if names or not _accepts_plain_text(accept):
        encoder, content_type = pc.exposition.choose_encoder(accept or "")
        target = registry.restricted_registry(names) if names else registry
        return bytes(encoder(target)), str(content_type)
    from reliability.sla.exposition import render_registry

    return render_registry(registry), CONTENT_TYPE


class _MetricsHandler(BaseHTTPRequestHandler):
    """GET (any path, as prometheus-client's server) serves the metrics; OPTIONS; else 405."""

    server: _MetricsHTTPServer

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/favicon.ico":
            self._reply(200, [], b"")
            return
        try:
            body, content_type = render_metrics(self.server.registry,
                                                self.headers.get("Accept"), parse_qs(url.query))
        except Exception as exc:  # a broken collector: report it to the scraper
            self._reply(500, [("Content-Type", "text/plain; charset=utf-8")],
                        f"error collecting metrics: {exc}\n".encode())
            return
        self.server.served(body)
        headers = [("Content-Type", content_type)]
        if _gzip_accepted(self.headers.get("Accept-Encoding")):
            body = self.server.compress(body)
            headers.append(("Content-Encoding", "gzip"))
        self._reply(200, headers, body)

    def do_OPTIONS(self) -> None:
        self._reply(200, [("Allow", "OPTIONS,GET")], b"")

    def _not_allowed(self) -> None:
        body = f"# HTTP 405 Method Not Allowed: {self.command}; use OPTIONS or GET\n".encode()
        self._reply(405, [("Allow", "OPTIONS,GET")], b"" if self.command == "HEAD" else body)

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _not_allowed

    def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _MetricsHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr: tuple[str, int], registry: Any, family: socket.AddressFamily
                 ) -> None:
        self.address_family = family
        self.registry = registry
        self._gzipped: tuple[bytes, bytes] = (b"", gzip.compress(b"", compresslevel=1))
        self.scraped = threading.Condition()
        self.last_body: bytes | None = None  # what the latest scrape got
        self.scrape_times: deque[float] = deque(maxlen=2)
        super().__init__(addr, _MetricsHandler)

    def served(self, body: bytes) -> None:
        with self.scraped:
            self.last_body = body
            self.scrape_times.append(time.monotonic())
            self.scraped.notify_all()

    def wait_for_final_scrape(self, timeout: float | None) -> bool:
        """Block until a scrape has served the current values (see MetricsServer.close)."""
        with self.scraped:
            if self.last_body is None:
                return True  # never scraped: nobody is waiting for these values
            times = list(self.scrape_times)
        if timeout is None:  # one and a half of the interval seen between scrapes, + 1 s
            gap = times[-1] - times[0] if len(times) == 2 else FINAL_SCRAPE_MAX
            timeout = min(1.5 * gap + 1.0, FINAL_SCRAPE_MAX)
        try:
            body = render_metrics(self.registry)[0]
        except Exception:
            return False
        with self.scraped:
            return self.scraped.wait_for(lambda: self.last_body == body, timeout)

    def compress(self, body: bytes) -> bytes:
        """gzip at level 1 (a 4 MB body in a few ms); an unchanged body reuses the last."""
        last_body, last_gz = self._gzipped
        if body == last_body:
            return last_gz
        gz = gzip.compress(body, compresslevel=1)
        self._gzipped = (body, gz)
        return gz


class MetricsServer:
    """A running ``/metrics`` HTTP server; ``close()`` (or ``with``) shuts it down.

    Unpacks as ``server, port = serve_metrics(registry)``.
    """

    def __init__(self, server: Any, thread: threading.Thread, host: str) -> None:
        self._server = server
        self._thread = thread
        self.host = host
        self.port = int(server.server_port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def scrape_interval(self) -> float | None:
        """Seconds between the last two scrapes, or None before the second one."""
        with self._server.scraped:
            times = list(self._server.scrape_times)
        return times[-1] - times[0] if len(times) == 2 else None

    def close(self, final_scrape: float | None = None) -> None:
        """Stop serving.

        If something scraped this server and the values changed since its last scrape,
        first wait until a scrape has fetched them -- a run's final outcome must reach
        Prometheus before its exporter goes -- for at most ``final_scrape`` seconds
        (default: 1.5 times the interval seen between the last two scrapes plus a second,
        up to :data:`FINAL_SCRAPE_MAX`; 0: do not wait). Returns at once when nothing ever
        scraped it.
        """
        try:
            if final_scrape is None or final_scrape > 0:
                self._server.wait_for_final_scrape(final_scrape)
        finally:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)

    def __iter__(self) -> Iterator[Any]:
        return iter((self, self.port))

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_metrics(registry: Any, host: str = "127.0.0.1", port: int = 0) -> MetricsServer:
    """Serve ``registry`` on ``http://host:port/metrics`` (port 0: a free port).

    Scrapes use :func:`render_metrics`: cached text for
    :class:`~reliability.sla.metrics.PipelineMetrics`, so a
    scrape of thousands of series costs milliseconds.
    """
    require("prometheus_client", "prometheus", "the metrics exporter")
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, addr = info[0][0], str(info[0][4][0])
        server = _MetricsHTTPServer((addr, port), registry, family)
    except OSError as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise SLAError(f"cannot serve metrics on {host}:{port}: {reason}. "
                       "Fix: pick a free --port, or 0 for any free port") from None
    thread = threading.Thread(target=server.serve_forever, name="reliability-metrics",
                              daemon=True)
    thread.start()
    return MetricsServer(server, thread, host)


def push_metrics(registry: Any, gateway: str, *, pipeline: str,
                 grouping_key: Mapping[str, str] | None = None, job: str = "reliability",
                 timeout: float = 10.0) -> None:
    """Push ``registry`` to a Pushgateway, grouped by ``pipeline`` (never by run id)."""
    pc = require("prometheus_client", "prometheus", "pushing metrics")
    key = {"pipeline": pipeline, **dict(grouping_key or {})}
    try:
        pc.push_to_gateway(gateway, job=job, registry=registry, grouping_key=key,
                           timeout=timeout)
    except OSError as exc:
        raise SLAError(f"cannot push metrics to Pushgateway {gateway!r}: {exc}. Fix: check "
                       "the gateway address, or serve /metrics instead") from None
