"""A small upstream data service: serves the wine measurements as CSV over HTTP.

It stands in for the warehouse or feature API a real ingest step talks to, so network faults
(through the Toxiproxy-compatible proxy) hit a real TCP connection in the reference pipeline.
Binds to 127.0.0.1 on a free port unless told otherwise.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["WineService", "wine_csv"]


def wine_csv() -> bytes:
    """The bundled scikit-learn wine data as CSV bytes (no download)."""
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame
    frame.columns = [c.replace("/", "_") for c in frame.columns]
    return bytes(frame.to_csv(index=False), "utf-8")


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        if self.path.split("?")[0] != "/wine.csv":
            self.send_error(404, "only /wine.csv is served")
            return
        body = self.server.payload
        self.send_response(200)
        self.send_header("Content-Type", "text/csv")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    payload: bytes = b""


class WineService:
    """``with WineService() as svc: svc.url`` — a CSV endpoint for the reference pipeline."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server = _Server((host, port), _Handler)
        self.server.payload = wine_csv()
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                       name="wine-service")

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/wine.csv"

    def __enter__(self) -> WineService:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
