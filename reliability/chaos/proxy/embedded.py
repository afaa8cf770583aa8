"""Run the Toxiproxy-compatible server on a background thread, from synchronous code.

::

    with ProxyServer(port=0) as server:          # loopback, free port
        toxiproxy = server.client()              # toxiproxy-python, pointed at it
        redis = toxiproxy.create(upstream="127.0.0.1:6379", name="redis")
        redis.add_toxic(type="latency", attributes={"latency": 100})
        ...

The server owns a private event loop on a daemon thread; ``start()`` returns
once the API is listening (or raises), ``stop()`` closes every proxy and
connection and joins the thread. Against a real Toxiproxy, point the client at
its address instead -- nothing else changes.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

from reliability.chaos.proxy.config import load_config
from reliability.chaos.proxy.errors import ProxyServerError
from reliability.chaos.proxy.server import DEFAULT_HOST, DEFAULT_PORT, AsyncProxyServer
from reliability.errors import ReliabilityError

__all__ = ["ProxyServer"]

T = TypeVar("T")


class ProxyServer:
    """A Toxiproxy-compatible server on its own thread and event loop.

    ``port=0`` picks a free port (read it back from :attr:`port`). ``proxies``
    (Toxiproxy config entries) or ``config`` (path to a Toxiproxy JSON config
    file) are created at start. ``seed`` seeds the server's random source (toxicity
    rolls, latency jitter, slicer sizes); default: unseeded.
    """

    def __init__(
        self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
        proxies: Sequence[Mapping[str, Any]] | None = None,
        config: str | Path | None = None,
        start_timeout: float = 10.0, seed: int | None = None,
    ) -> None:
        entries = list(proxies or [])
        if config is not None:
            entries += [
                {"name": p.name, "listen": p.listen, "upstream": p.upstream, "enabled": p.enabled}
                for p in load_config(config)
            ]
        self._async = AsyncProxyServer(host, port, proxies=entries, seed=seed)
        self._start_timeout = start_timeout
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # -- addresses ------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self._async.host

    @property
    def port(self) -> int:
        return self._async.port

    @property
    def address(self) -> str:
        """``host:port`` of the API, as toxiproxy clients take it."""
        return self._async.address

    @property
    def url(self) -> str:
        return self._async.url

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the server thread; return once the API listens. Raises ChaosError."""
        if self._thread is not None:
            raise ProxyServerError("proxy server is already running")
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name="toxiproxy-embedded", daemon=True)
        self._thread.start()
        if not self._ready.wait(self._start_timeout):
            raise ProxyServerError(f"proxy server did not start within {self._start_timeout}s")
        if self._error is not None:
            self._thread.join()
            self._thread = None
            error = self._error
            if isinstance(error, ReliabilityError):
                raise error
            raise ProxyServerError(f"proxy server failed to start: {error!r}") from error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Close every proxy and connection and join the thread (idempotent)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        thread.join(timeout)
        if thread.is_alive():
            raise ProxyServerError(f"proxy server did not stop within {timeout}s")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced to start(); never lost silently
            self._error = self._error or exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            await self._async.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await self._async.stop()

    # -- programmatic access --------------------------------------------------------------

    def call(self, func: Callable[[AsyncProxyServer], Awaitable[T]], timeout: float = 10.0) -> T:
        """Run ``func(async_server)`` on the server's loop and return its result."""
        loop = self._loop
        if self._thread is None or loop is None:
            raise ProxyServerError("proxy server is not running. Fix: call start() first")

        async def invoke() -> T:
            return await func(self._async)

        return asyncio.run_coroutine_threadsafe(invoke(), loop).result(timeout)

    def populate(self, proxies: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Create or replace proxies (Toxiproxy config entries); return their JSON."""

        async def run(server: AsyncProxyServer) -> list[dict[str, Any]]:
            return [p.to_json() for p in await server.registry.populate(list(proxies))]

        return self.call(run)

    def reset(self) -> None:
        """Enable every proxy and remove every toxic (``POST /reset``)."""

        async def run(server: AsyncProxyServer) -> None:
            await server.registry.reset()

        self.call(run)

    def client(self) -> Any:
        """A ``toxiproxy.Toxiproxy`` client pointed at this server.

        toxiproxy-python keeps its API address on a class, so this re-points
        every client in the process.
        """
        from toxiproxy import Toxiproxy

        toxiproxy = Toxiproxy()
        toxiproxy.update_api_consumer(self.host, self.port)
        return toxiproxy
