"""A TCP proxy (listener, upstream dialling, connections) with a live toxic collection.

:class:`Proxy` mirrors a Toxiproxy proxy: it listens on ``listen``, dials
``upstream`` for every accepted client and joins them with a
:class:`Connection` made of two :class:`~reliability.chaos.proxy.link.Link`
objects (``upstream``: client -> server, ``downstream``: server -> client).
Disabling a proxy stops listening and closes every connection, so new clients
are refused -- Toxiproxy's ``down``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import socket
import struct
from collections.abc import Sequence
from typing import Any

from reliability.chaos.proxy.errors import ApiError, toxic_exists, toxic_not_found
from reliability.chaos.proxy.link import Link
from reliability.chaos.proxy.stream import CLOSE, RESET
from reliability.chaos.proxy.toxics import STREAMS, ToxicSpec

__all__ = ["Connection", "Proxy", "format_address", "open_listener", "resolve_listen",
           "split_address"]

log = logging.getLogger("reliability.chaos.proxy")

CONNECT_TIMEOUT = 10.0
_LINGER_RESET = struct.pack("ii", 1, 0)


def split_address(address: str) -> tuple[str, int]:
    """Split ``host:port`` / ``[v6]:port`` / ``:port``; raise ApiError(400) if malformed."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or int(port) > 65535:
        raise ApiError(f"invalid address {address!r}: expected host:port", 400)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def format_address(family: int, sockaddr: Any) -> str:
    host, port = sockaddr[0], sockaddr[1]
    return f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"


def _prefer_ipv4(infos: Sequence[tuple[Any, ...]]) -> tuple[Any, ...]:
    """Go's choice among a host name's addresses for "tcp": the first IPv4 one."""
    return next((info for info in infos if info[0] == socket.AF_INET), infos[0])


def open_listener(listen: str) -> socket.socket:
    """Bind a non-blocking listening socket; raise ApiError(500) like Toxiproxy on failure.

    A host name binds its first IPv4 address (``localhost`` -> 127.0.0.1), as Go does.
    """
    host, port = split_address(listen)
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, kind, proto, _, addr = _prefer_ipv4(infos)
        sock = socket.socket(family, kind, proto)
    except (OSError, ValueError) as exc:  # ValueError: NUL or an unencodable host name
        reason = getattr(exc, "strerror", None) or "no such host"
        raise ApiError(f"listen tcp: lookup {host}: {reason}", 500) from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(1024)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        reason = (exc.strerror or str(exc)).lower()
        where = format_address(family, addr)
        raise ApiError(f"listen tcp {where}: bind: {reason}", 500) from exc
    return sock


async def resolve_listen(listen: str) -> str:
    """``listen`` as Go's ``net.ResolveTCPAddr`` prints it: ``localhost:80`` -> ``127.0.0.1:80``.

    Toxiproxy compares this with a proxy's bound address to decide whether a populate or an
    update changes the proxy. Raises ApiError(500) for a name that does not resolve.
    """
    host, port = split_address(listen)
    if not host:
        return f":{port}"
    try:
        family, addr = _prefer_ipv4(await _resolve(host, port))
    except OSError as exc:
        raise ApiError(f"lookup {host}: {exc.strerror or 'no such host'}", 500) from exc
    return format_address(family, addr)


async def _resolve(host: str, port: int) -> list[tuple[int, Any]]:
    """``(family, sockaddr)`` of ``host`` (an IP literal as it is); OSError if unknown."""
    host = host or "127.0.0.1"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM)
        except ValueError as exc:  # NUL or an unencodable host name
            raise OSError(0, "no such host") from exc
        return [(info[0], info[4]) for info in infos]
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    return [(family, (str(ip), port))]


async def open_upstream(address: str) -> socket.socket:
    """Connect a non-blocking TCP socket to ``address`` (TCP_NODELAY set)."""
    loop = asyncio.get_running_loop()
    error: OSError = OSError(f"no address for {address}")
    for family, sockaddr in await _resolve(*split_address(address)):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await loop.sock_connect(sock, sockaddr)
        except (OSError, TimeoutError) as exc:
            sock.close()
            error = exc if isinstance(exc, OSError) else OSError(f"connect timeout: {address}")
            continue
        except BaseException:
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise error


class Connection:
    """A client joined to its upstream by two links; closes as a unit."""

    def __init__(self, proxy: Proxy, client: socket.socket, upstream: socket.socket) -> None:
        self._proxy = proxy
        self.rng = proxy.rng
        self._sockets = (client, upstream)
        self.links = {
            "upstream": Link(self, "upstream", client, upstream, proxy.chain("upstream")),
            "downstream": Link(self, "downstream", upstream, client, proxy.chain("downstream")),
        }
        self._done = asyncio.Event()
        self._mode = CLOSE
        self._finished = 0

    def request_close(self, kind: int) -> None:
        if kind == RESET:
            self._mode = RESET
        self._done.set()

    def direction_finished(self) -> None:
        self._finished += 1
        if self._finished >= len(self.links):
            self._done.set()

    async def run(self) -> None:
        for link in self.links.values():
            link.start()
        try:
            await self._done.wait()
        finally:
            await self._teardown()

    async def _teardown(self) -> None:
        tasks = [task for link in self.links.values() for task in link.shutdown()]
        try:
            if tasks:
                await asyncio.wait(tasks)
        finally:
            for sock in self._sockets:
                if self._mode == RESET:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
                sock.close()
            self._proxy.account(self)


class Proxy:
    """One named proxy: listener, live connections and its toxic chains."""

    def __init__(self, name: str, listen: str, upstream: str,
                 rng: random.Random | None = None) -> None:
        self.name = name
        self.rng = rng or random.Random()  # toxicity rolls, jitter and slicer sizes
        self.listen = listen
        self.upstream = upstream
        self.enabled = False
        self.toxics: dict[str, list[ToxicSpec]] = {stream: [] for stream in STREAMS}
        self.byte_totals: dict[str, list[int]] = {stream: [0, 0] for stream in STREAMS}
        self._listener: socket.socket | None = None
        self._accept_task: asyncio.Task[None] | None = None
        self._sessions: set[asyncio.Task[None]] = set()
        self._connections: set[Connection] = set()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "toxics": [spec.to_json() for spec in self.all_toxics()],
        }

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Listen and accept; a no-op if enabled. Raises ApiError if the bind fails."""
        if self.enabled:
            return
        listener = open_listener(self.listen)
        self._listener = listener
        self.listen = format_address(listener.family, listener.getsockname())
        self.enabled = True
        self._accept_task = asyncio.get_running_loop().create_task(self._accept_loop(listener))
        log.info("proxy %s listening on %s -> %s", self.name, self.listen, self.upstream)

    async def stop(self) -> None:
        """Stop listening and close every connection (new clients are refused)."""
        if not self.enabled:
            return
        self.enabled = False
        tasks = set(self._sessions)
        if self._accept_task is not None:
            tasks.add(self._accept_task)
        for task in tasks:
            task.cancel()
        try:
            if tasks:
                await asyncio.wait(tasks)
        finally:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
        log.info("proxy %s stopped", self.name)

    async def differs(self, listen: str, upstream: str) -> bool:
        """Toxiproxy's ``Differs``: another (resolved) listen address or upstream."""
        return await resolve_listen(listen) != self.listen or upstream != self.upstream

    async def update(self, listen: str, upstream: str, enabled: bool) -> None:
        """Toxiproxy's ``Update``: restart on a changed address, then apply ``enabled``."""
        if await self.differs(listen, upstream):
            await self.stop()
            self.listen, self.upstream = listen, upstream
        if enabled:
            self.start()
        else:
            await self.stop()

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                client, _ = await loop.sock_accept(listener)
            except OSError as exc:
                log.warning("proxy %s: accept failed: %s", self.name, exc)
                await asyncio.sleep(0.1)
                continue
            task = loop.create_task(self._serve(client))
            self._sessions.add(task)
            task.add_done_callback(self._session_done)

    def _session_done(self, task: asyncio.Task[None]) -> None:
        self._sessions.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("proxy %s: connection failed", self.name, exc_info=task.exception())

    async def _serve(self, client: socket.socket) -> None:
        try:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upstream = await open_upstream(self.upstream)
        except OSError as exc:
            log.warning("proxy %s: cannot reach upstream %s: %s", self.name, self.upstream, exc)
            client.close()
            return
        except BaseException:
            client.close()
            raise
        connection = Connection(self, client, upstream)
        self._connections.add(connection)
        await connection.run()

    def account(self, connection: Connection) -> None:
        """Fold a closed connection's byte counters into the proxy totals."""
        self._connections.discard(connection)
        for stream, link in connection.links.items():
            self.byte_totals[stream][0] += link.bytes_received
            self.byte_totals[stream][1] += link.bytes_sent

    def byte_counts(self) -> dict[str, tuple[int, int]]:
        """``{stream: (received, sent)}`` including live connections."""
        counts = {stream: (total[0], total[1]) for stream, total in self.byte_totals.items()}
        for connection in self._connections:
            for stream, link in connection.links.items():
                received, sent = counts[stream]
                counts[stream] = (received + link.bytes_received, sent + link.bytes_sent)
        return counts

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    # -- toxics ---------------------------------------------------------------------------

    def chain(self, stream: str) -> list[ToxicSpec]:
        return list(self.toxics[stream])

    def all_toxics(self) -> list[ToxicSpec]:
        return [spec for stream in STREAMS for spec in self.toxics[stream]]

    def has_toxic(self, name: str) -> bool:
        return any(spec.name == name for spec in self.all_toxics())

    def get_toxic(self, name: str) -> ToxicSpec:
        for spec in self.all_toxics():
            if spec.name == name:
                return spec
        raise toxic_not_found()

    def add_toxic(self, spec: ToxicSpec) -> None:
        if any(existing.name == spec.name for existing in self.all_toxics()):
            raise toxic_exists()
        self.toxics[spec.direction].append(spec)
        for connection in self._connections:
            connection.links[spec.direction].add_toxic(spec)

    def update_toxic(self, name: str, body: object) -> ToxicSpec:
        old = self.get_toxic(name)
        new = old.updated(body)
        chain = self.toxics[old.direction]
        chain[chain.index(old)] = new
        for connection in self._connections:
            connection.links[old.direction].update_toxic(new)
        return new

    def remove_toxic(self, name: str) -> None:
        spec = self.get_toxic(name)
        self.toxics[spec.direction].remove(spec)
        for connection in self._connections:
            connection.links[spec.direction].remove_toxic(name)

    def reset_toxics(self) -> None:
        for spec in self.all_toxics():
            self.remove_toxic(spec.name)
