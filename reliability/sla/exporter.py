"""Getting metrics to Prometheus: a ``/metrics`` endpoint, or a push for short batch runs.

Which fits when:

* **Long-lived exporter** (:func:`serve_metrics`) -- a process that outlives single runs:
  the scheduler, a service running pipelines on demand, or ``reliability sla serve``.
  Prometheus scrapes it; counters keep rising across runs, so ``rate()`` and burn-rate
  alerts work. Binds to loopback (127.0.0.1) unless told otherwise.
* **Pushgateway** (:func:`push_metrics`) -- a one-shot ``reliability run`` from cron/CI that
  ends before Prometheus would scrape it. Push the registry once, at the end of the run,
  grouped by pipeline (the job's last state replaces the previous one; no run id in the
  grouping key, or the gateway grows without bound). Timestamps such as
  ``reliability_last_success_timestamp_seconds`` stay meaningful between pushes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any

from reliability._lazy import require
from reliability.errors import SLAError

__all__ = ["MetricsServer", "push_metrics", "serve_metrics"]


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
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
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
    """Serve ``registry`` on ``http://host:port/metrics`` (port 0: a free port)."""
    pc = require("prometheus_client", "prometheus", "the metrics exporter")
    try:
        server, thread = pc.start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise SLAError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}. "
                       "Fix: pick a free --port, or 0 for any free port") from None
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
