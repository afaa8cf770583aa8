"""Toxiproxy 2.x HTTP API on asyncio: routes, handlers and :class:`AsyncProxyServer`.

=========================================== ===== ====================================
route                                       code  body
=========================================== ===== ====================================
GET    /proxies                             200   ``{name: proxy}``
POST   /proxies                             201   proxy (409 duplicate, 400 bad body)
POST   /populate                            201   ``{"proxies": [proxy, ...]}``
GET    /proxies/{name}                      200   proxy (404 missing)
POST   /proxies/{name} (or PATCH)           200   proxy, after listen/upstream/enabled update
DELETE /proxies/{name}                      204
GET    /proxies/{name}/toxics               200   ``[toxic, ...]``
POST   /proxies/{name}/toxics               200   toxic (409 duplicate, 400 bad type/body)
GET    /proxies/{name}/toxics/{toxic}       200   toxic
POST   /proxies/{name}/toxics/{toxic}       200   toxic, after attributes/toxicity update
DELETE /proxies/{name}/toxics/{toxic}       204
POST   /reset                               204   every proxy enabled, every toxic removed
GET    /version                             200   ``{"version": "..."}``
GET    /metrics                             200   Prometheus text
=========================================== ===== ====================================

Errors are ``{"error": "...", "status": N}`` (written, as Toxiproxy does, through
Go's ``http.Error``: ``text/plain``, a trailing newline). As in Toxiproxy, requests whose
User-Agent starts with ``Mozilla/`` get 403 so a web page cannot drive the API; an
unknown path gets ``404 page not found``, a known path with another method an empty 405,
a path that is not clean (``//x``, ``/a/../b``) a 301 to its clean form, as gorilla/mux
answers. Every response carries an ``X-Toxiproxy-Request-Id`` header.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import logging
import os
import posixpath
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from email.utils import formatdate
from typing import Any, Self
from urllib.parse import quote

from reliability.chaos.proxy.config import validate_proxies
from reliability.chaos.proxy.errors import ApiError, ProxyServerError
from reliability.chaos.proxy.http import MAX_HEADER, Request, Response, serve_connection
from reliability.chaos.proxy.registry import PopulateError, ProxyInput, ProxyRegistry
from reliability.chaos.proxy.toxics import parse_toxic

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "VERSION", "AsyncProxyServer", "Router"]

log = logging.getLogger("reliability.chaos.proxy")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8474
VERSION = "2.12.0-embedded"
"""Reported by ``GET /version``: the Toxiproxy API level this server implements."""

Route = Callable[[Request, list[str]], Awaitable[Response]]

_counter = itertools.count(int.from_bytes(os.urandom(3), "big"))


def request_id() -> str:
    """A 20-character id shaped like Toxiproxy's (an xid: time, random, counter)."""
    raw = (int(time.time()).to_bytes(4, "big") + os.urandom(5)
           + (next(_counter) % (1 << 24)).to_bytes(3, "big"))
    return base64.b32hexencode(raw).decode().rstrip("=").lower()


def response_headers() -> dict[str, str]:
    """What Go's server and Toxiproxy's middleware put on every response."""
    return {"Date": formatdate(usegmt=True), "X-Toxiproxy-Request-Id": request_id()}


def clean_path(path: str) -> str:
    """gorilla/mux's cleanPath: ``path.Clean`` keeping a trailing slash."""
    if not path.startswith("/"):
        path = "/" + path
    cleaned = posixpath.normpath(path)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    if path.endswith("/") and cleaned != "/":
        cleaned += "/"
    return cleaned


class Router:
    """Maps requests to handlers on a :class:`ProxyRegistry`, as Toxiproxy's mux router."""

    def __init__(self, registry: ProxyRegistry) -> None:
        self.registry = registry
        r = self
        self._routes: list[tuple[tuple[str, ...], dict[str, Route] | Route]] = [
            (("reset",), {"POST": r.reset}),
            (("proxies",), {"GET": r.proxy_index, "POST": r.proxy_create}),
            (("populate",), {"POST": r.populate}),
            (("proxies", "*"), {"GET": r.proxy_show, "POST": r.proxy_update,
                                "PATCH": r.proxy_update, "DELETE": r.proxy_delete}),
            (("proxies", "*", "toxics"), {"GET": r.toxic_index, "POST": r.toxic_create}),
            (("proxies", "*", "toxics", "*"), {"GET": r.toxic_show, "POST": r.toxic_update,
                                               "PATCH": r.toxic_update,
                                               "DELETE": r.toxic_delete}),
            (("version",), {"GET": r.version}),
            (("metrics",), r.metrics),  # any method, as Toxiproxy's metrics handler
        ]

    async def __call__(self, request: Request) -> Response:
        path = request.path
        cleaned = clean_path(path)
        if cleaned != path:
            query = f"?{request.query}" if request.query else ""
            location = quote(cleaned, safe="/:@!$&'()*+,;=") + query  # escaped, as Go's URL
            return Response(301, headers={"Location": location})
        try:
            route = self._match(request.method, request.segments)
        except ApiError as exc:
            return Response(exc.status) if exc.status == 405 else Response.text(
                exc.status, exc.message)
        if request.headers.get("user-agent", "").startswith("Mozilla/"):
            return Response.text(403, "User agent not allowed")
        handler, args = route
        try:
            return await handler(request, args)
        except ApiError as exc:
            return Response.error(exc)
        except Exception:
            log.exception("proxy API: %s %s failed", request.method, request.target)
            return Response.error(ApiError("internal server error; see the server log", 500))

    def _match(self, method: str, segments: list[str]) -> tuple[Route, list[str]]:
        """The route for ``method`` and ``segments``; 405 for a known path, else 404."""
        path_matched = False
        for pattern, methods in self._routes:
            if len(pattern) != len(segments) or not all(
                (s != "") if p == "*" else (p == s) for p, s in zip(pattern, segments, strict=True)
            ):
                continue
            args = [s for p, s in zip(pattern, segments, strict=True) if p == "*"]
            handler = methods if callable(methods) else methods.get(method)
            if handler is not None:
                return handler, args
            path_matched = True
        if path_matched:
            raise ApiError("", 405)
        raise ApiError("404 page not found", 404)

    # -- proxies --------------------------------------------------------------------------

    async def proxy_index(self, request: Request, args: list[str]) -> Response:
        proxies = sorted(self.registry.all(), key=lambda p: p.name)  # Go sorts map keys
        return Response(200, {p.name: p.to_json() for p in proxies})

    async def proxy_create(self, request: Request, args: list[str]) -> Response:
        proxy = await self.registry.create(request.json())
        return Response(201, proxy.to_json())

    async def populate(self, request: Request, args: list[str]) -> Response:
        """201 ``{"proxies": [...]}``; on an error its status with the error and the proxies
        done before it: ``{"error", "status", "proxies"}`` (``null`` for none, as Go)."""
        try:
            proxies = await self.registry.populate(request.json())
        except PopulateError as exc:
            done = [p.to_json() for p in exc.proxies] or None
            return Response(exc.status, {**exc.body(), "proxies": done})
        except ApiError as exc:
            return Response(exc.status, {**exc.body(), "proxies": None})
        return Response(201, {"proxies": [p.to_json() for p in proxies] or None})

    async def proxy_show(self, request: Request, args: list[str]) -> Response:
        return Response(200, self.registry.get(args[0]).to_json())

    async def proxy_update(self, request: Request, args: list[str]) -> Response:
        proxy = await self.registry.update(args[0], request.json())
        return Response(200, proxy.to_json())

    async def proxy_delete(self, request: Request, args: list[str]) -> Response:
        await self.registry.delete(args[0])
        return Response(204)

    async def reset(self, request: Request, args: list[str]) -> Response:
        await self.registry.reset()
        return Response(204)

    async def version(self, request: Request, args: list[str]) -> Response:
        body = f'{{"version": "{VERSION}"}}\n'  # Toxiproxy's exact bytes
        return Response(200, body.encode(), "application/json;charset=utf-8")

    async def metrics(self, request: Request, args: list[str]) -> Response:
        return Response(200, render_metrics(self.registry).encode(errors="replace"),
                        "text/plain; version=0.0.4; charset=utf-8")

    # -- toxics ---------------------------------------------------------------------------

    async def toxic_index(self, request: Request, args: list[str]) -> Response:
        proxy = self.registry.get(args[0])
        return Response(200, [spec.to_json() for spec in proxy.all_toxics()])

    async def toxic_create(self, request: Request, args: list[str]) -> Response:
        proxy = self.registry.get(args[0])
        spec = parse_toxic(request.json(), proxy.has_toxic)
        proxy.add_toxic(spec)
        return Response(200, spec.to_json())

    async def toxic_show(self, request: Request, args: list[str]) -> Response:
        return Response(200, self.registry.get(args[0]).get_toxic(args[1]).to_json())

    async def toxic_update(self, request: Request, args: list[str]) -> Response:
        proxy = self.registry.get(args[0])
        return Response(200, proxy.update_toxic(args[1], request.json()).to_json())

    async def toxic_delete(self, request: Request, args: list[str]) -> Response:
        self.registry.get(args[0]).remove_toxic(args[1])
        return Response(204)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(registry: ProxyRegistry) -> str:
    """Byte counters per proxy and direction, Toxiproxy metric names."""
    out = []
    for metric, column in (("received", 0), ("sent", 1)):
        name = f"toxiproxy_proxy_{metric}_bytes_total"
        out += [f"# HELP {name} Bytes {metric} by the proxy.", f"# TYPE {name} counter"]
        for proxy in registry.all():
            for direction, counts in proxy.byte_counts().items():
                labels = (f'direction="{direction}",listener="{_label(proxy.listen)}",'
                          f'proxy="{_label(proxy.name)}",upstream="{_label(proxy.upstream)}"')
                out.append(f"{name}{{{labels}}} {counts[column]}")
    out += ["# HELP toxiproxy_proxy_connections Open client connections.",
            "# TYPE toxiproxy_proxy_connections gauge"]
    out += [f'toxiproxy_proxy_connections{{proxy="{_label(p.name)}"}} {p.connection_count}'
            for p in registry.all()]
    return "\n".join(out) + "\n"


class AsyncProxyServer:
    """The embedded Toxiproxy-compatible server, for use inside an event loop.

    ``async with AsyncProxyServer(port=0) as server:`` listens on loopback and
    serves the API at ``server.url``; ``proxies`` are created at start, in
    Toxiproxy's config format.
    """

    def __init__(
        self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
        proxies: Sequence[Mapping[str, Any]] | None = None, seed: int | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.registry = ProxyRegistry(seed)
        self._router = Router(self.registry)
        self._initial: list[ProxyInput] = validate_proxies(list(proxies)) if proxies else []
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[Any]] = set()

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    async def start(self) -> Self:
        if self._server is not None:
            raise ProxyServerError("proxy server is already running")
        try:
            await self.registry.populate_specs(self._initial)
            self._server = await asyncio.start_server(
                self._on_client, self.host, self.port, limit=MAX_HEADER, reuse_address=True
            )
        except (OSError, ApiError) as exc:
            await self.registry.close()
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ProxyServerError(
                f"cannot start the proxy server on {self.address}: {reason}. "
                "Fix: choose a free port (port=0 picks one) or stop the other server"
            ) from exc
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("toxiproxy-compatible API listening on %s", self.url)
        return self

    async def stop(self) -> None:
        """Stop the API, close every proxy and connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        clients = set(self._clients)
        for task in clients:
            task.cancel()
        if clients:
            await asyncio.wait(clients)
        await server.wait_closed()
        await self.registry.close()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        try:
            await serve_connection(reader, writer, self._router, response_headers)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # stop() cancels idle keep-alive connections. End the task normally:
            # asyncio 3.11's stream callback calls task.exception() on it.
            pass
        except Exception:  # a bug: say so, drop only this connection
            log.exception("proxy API: connection failed")
        finally:
            if task is not None:
                self._clients.discard(task)
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()
