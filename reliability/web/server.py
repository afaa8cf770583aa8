"""The HTTP server of ``reliability serve``: stdlib, threaded, loopback unless told otherwise.

Each request is answered by :meth:`OnCallApp.handle`, which never raises; this layer only
bounds what a client may send (request line and headers by ``http.server``, bodies here) and
survives clients that hang up mid-answer.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from reliability.errors import ConfigError
from reliability.web.app import HTML, OnCallApp, Response

__all__ = ["MAX_BODY", "OnCallServer", "serve"]

MAX_BODY = 1 << 20  # an Alertmanager notification is a few KB; 1 MiB is plenty


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    timeout = 30  # a client that stops sending mid-request is dropped

    def _serve(self) -> None:
        method = self.command
        body = b""
        if method == "POST":
            answer = self._read_body()
            if isinstance(answer, Response):
                self._send(answer)
                return
            body = answer
        response = self.server.app.handle(method, self.path, dict(self.headers.items()), body)
        self._send(response)

    def _read_body(self) -> bytes | Response:
        if self.headers.get("Transfer-Encoding"):
            return self.server.app.error_page(411, "send the body with a Content-Length")
        length = self.headers.get("Content-Length", "")
        if not length.isdigit():
            return self.server.app.error_page(411, "a POST needs a Content-Length header")
        if int(length) > MAX_BODY:
            return self.server.app.error_page(413, f"the body is over {MAX_BODY} bytes")
        return self.rfile.read(int(length))

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _serve

    def _send(self, r: Response) -> None:
        try:
            self.send_response(r.status)
            self.send_header("Content-Type", r.content_type)
            for name, value in r.headers:
                self.send_header(name, value)
            if r.content_type == HTML:
                self.send_header("Content-Security-Policy",
                                 "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                 "img-src 'self' data:; script-src 'none'")
                self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Length", str(len(r.body)))
            if r.status >= 400 and self.command == "POST":
                self.send_header("Connection", "close")  # an unread body may follow
                self.close_connection = True
            self.end_headers()
            if self.command != "HEAD" and r.body:
                self.wfile.write(r.body)
        except OSError:  # the client went away
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, addr: tuple[str, int], app: OnCallApp,
                 family: socket.AddressFamily) -> None:
        self.address_family = family
        self.app = app
        super().__init__(addr, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a broken connection; the server goes on


class OnCallServer:
    """A running server; ``close()`` (or ``with``) stops it and its ledger feed."""

    def __init__(self, server: _HTTPServer, thread: threading.Thread, host: str,
                 metrics: Any) -> None:
        self._server = server
        self._thread = thread
        self.app = server.app
        self.host = host
        self.port = int(server.server_port)
        self._metrics = metrics

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        if self._metrics is not None:
            self._metrics.stop()
        self.app.close()

    def __enter__(self) -> OnCallServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(home: str | Path, *, host: str = "127.0.0.1", port: int = 8080,
          url: str | None = None, runbooks_dir: str | Path | None = None, slas: Any = None,
          metrics: bool = True, interval: float = 1.0) -> OnCallServer:
    """Serve ``home``'s pages, runbooks, webhook and ``/metrics`` on ``host:port`` (0: any
    free port) in a background thread. ``url`` is where users and Alertmanager reach it
    (default ``http://host:port``)."""
    from reliability.web.metrics import LedgerMetrics

    home = Path(home)
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, addr = info[0][0], str(info[0][4][0])
    except OSError as exc:
        raise ConfigError(f"cannot serve on {host}:{port}: {exc.strerror or exc}",
                          path=("--host",), fix="use a local address such as 127.0.0.1"
                          ) from None
    app = OnCallApp(home, base_url=url or "http://127.0.0.1:8080", runbooks_dir=runbooks_dir)
    feed = None
    try:
        if metrics:
            feed = LedgerMetrics(home, slas, interval=interval)
            app.metrics = feed
        server = _HTTPServer((addr, port), app, family)
    except OSError as exc:
        app.close()
        raise ConfigError(f"cannot serve on {host}:{port}: {exc.strerror or exc}",
                          path=("--port",), fix="pick a free --port, or 0 for any free port"
                          ) from None
    except BaseException:
        app.close()
        raise
    shown = f"[{host}]" if ":" in host else host
    app.base_url = (url or f"http://{shown}:{server.server_port}").rstrip("/")
    app.renderer.base_url = f"{app.base_url}/runbooks"
    if feed is not None:
        feed.start()
    thread = threading.Thread(target=server.serve_forever, name="reliability-serve",
                              daemon=True)
    thread.start()
    return OnCallServer(server, thread, host, feed)
