"""Leases on what chaos changed outside the run, so it is undone even if the controller dies.

Every proxy, toxic or disabled proxy a controller (or a worker, for step-scoped network
faults) creates is first written to ``HOME/chaos/state.db`` with its owner pid and expiry.
Rollback deletes the lease after undoing it; ``reliability chaos cleanup`` (and the start of
every ``chaos run``) undoes the leases whose owner is dead or whose lease expired.

:class:`ProxyApi` drives a Toxiproxy HTTP API — the embedded server or a real Toxiproxy —
with the ``toxiproxy-python`` client.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from reliability._record import record
from reliability.errors import ChaosError, ConfigError

__all__ = ["Lease", "LeaseStore", "ProxyApi", "reap_leases"]

log = logging.getLogger("reliability.chaos")
class _ApiLock:
    """The process's lock around the API client (toxiproxy-python keeps host/port in class
    attributes) and the lease store's connection. A forked worker gets a fresh one: the
    parent's may be held by a thread (the chaos sweeper, a timer) that does not exist in the
    child, which would wait on it forever."""

    lock = threading.RLock()

    @classmethod
    def renew(cls) -> None:
        cls.lock = threading.RLock()


os.register_at_fork(after_in_child=_ApiLock.renew)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    id TEXT PRIMARY KEY, experiment TEXT NOT NULL, owner_pid INTEGER NOT NULL,
    host TEXT NOT NULL, api TEXT NOT NULL, proxy TEXT NOT NULL, kind TEXT NOT NULL,
    toxic TEXT, step TEXT, attempt INTEGER, embedded INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL, expires REAL)
"""


class ProxyApi:
    """A Toxiproxy API at ``url`` (``http://127.0.0.1:8474``), via toxiproxy-python."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if not parts.hostname or not parts.port:
            raise ChaosError(f"proxy API url {url!r} needs a host and a port. "
                             "Fix: write e.g. http://127.0.0.1:8474")
        self.url = f"http://{parts.hostname}:{parts.port}"
        self.host: str = parts.hostname
        self.port: int = parts.port

    @contextmanager
    def _server(self) -> Iterator[Any]:
        import requests
        import toxiproxy

        with _ApiLock.lock:
            server = toxiproxy.Toxiproxy()
            server.update_api_consumer(self.host, self.port)
            try:
                yield server
            except requests.ConnectionError as exc:
                raise ChaosError(f"proxy API {self.url} is unreachable ({exc.__class__.__name__}"
                                 "). Fix: start the proxy server or correct target.proxy_api"
                                 ) from None

    def _proxy(self, server: Any, name: str) -> Any:
        proxy = server.get_proxy(name)
        if proxy is None:
            raise ChaosError(f"proxy {name!r} does not exist on {self.url}. Fix: create it "
                             "(target.services) or correct the fault's 'proxy'")
        return proxy

    def create_proxy(self, name: str, upstream: str, listen: str = "127.0.0.1:0") -> str:
        """Create (or replace) proxy ``name``; return its listen address."""
        with self._server() as server:
            old = server.get_proxy(name)
            if old is not None:
                old.destroy()
            return str(server.create(upstream=upstream, name=name, listen=listen).listen)

    def delete_proxy(self, name: str) -> bool:
        import toxiproxy.exceptions as tx

        with self._server() as server:
            try:
                return bool(self._proxy(server, name).destroy())
            except (ChaosError, tx.NotFound):
                return False

    def add_toxic(self, proxy: str, name: str, toxic: str, *, stream: str = "downstream",
                  toxicity: float = 1.0, attributes: dict[str, int] | None = None) -> None:
        with self._server() as server:
            self._proxy(server, proxy).add_toxic(
                name=name, type=toxic, stream=stream, toxicity=toxicity,
                attributes=dict(attributes or {}))

    def remove_toxic(self, proxy: str, name: str) -> bool:
        import toxiproxy.exceptions as tx

        with self._server() as server:
            try:
                return bool(self._proxy(server, proxy).destroy_toxic(name))
            except (ChaosError, tx.NotFound):
                return False

    def set_enabled(self, proxy: str, enabled: bool) -> None:
        with self._server() as server:
            p = self._proxy(server, proxy)
            if enabled:
                p.enable()
            else:
                p.disable()

    def toxics(self, proxy: str) -> list[str]:
        with self._server() as server:
            return sorted(self._proxy(server, proxy).toxics())

    def proxies(self) -> dict[str, dict[str, Any]]:
        with self._server() as server:
            return {n: {"listen": p.listen, "upstream": p.upstream, "enabled": p.enabled}
                    for n, p in server.proxies().items()}

    def reset(self) -> None:
        with self._server() as server:
            server.reset()


@record(frozen=True, slots=True)
class Lease:
    id: str
    experiment: str
    owner_pid: int
    host: str
    api: str
    proxy: str
    kind: str  # "toxic" | "disabled" | "proxy"
    toxic: str | None = None
    step: str | None = None
    attempt: int | None = None
    embedded: bool = False
    created: float = 0.0
    expires: float | None = None

    def undo(self, api: ProxyApi) -> None:
        if self.kind == "toxic" and self.toxic:
            api.remove_toxic(self.proxy, self.toxic)
        elif self.kind == "disabled":
            api.set_enabled(self.proxy, True)
        elif self.kind == "proxy":
            api.delete_proxy(self.proxy)


class LeaseStore:
    """SQLite table of leases; safe to use from the controller and forked workers."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._db() as db:
                db.execute(_SCHEMA)
        except (OSError, sqlite3.DatabaseError) as exc:
            raise ConfigError(
                f"cannot open the chaos lease store ({exc})", file=str(self.path),
                fix="point --home at a writable directory, or move the damaged file aside"
                ) from None

    def __getstate__(self) -> dict[str, Any]:
        """Shipped to workers in other processes (Dask): each opens its own connection."""
        return {"path": self.path, "_conn": None, "_pid": -1}

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        if self._conn is None or self._pid != os.getpid():  # never share across a fork
            self._conn = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                         check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._pid = os.getpid()
        with _ApiLock.lock:
            yield self._conn

    def add(self, lease: Lease) -> None:
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO leases VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", (
                lease.id, lease.experiment, lease.owner_pid, lease.host, lease.api,
                lease.proxy, lease.kind, lease.toxic, lease.step, lease.attempt,
                int(lease.embedded), lease.created or time.time(), lease.expires))

    def remove(self, lease_id: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM leases WHERE id=?", (lease_id,))

    def list(self, experiment: str | None = None) -> list[Lease]:
        with self._db() as db:
            q, args = "SELECT * FROM leases", []
            if experiment is not None:
                q, args = q + " WHERE experiment=?", [experiment]
            rows = db.execute(q + " ORDER BY created, id", args).fetchall()
        return [Lease(id=r[0], experiment=r[1], owner_pid=r[2], host=r[3], api=r[4],
                      proxy=r[5], kind=r[6], toxic=r[7], step=r[8], attempt=r[9],
                      embedded=bool(r[10]), created=r[11], expires=r[12]) for r in rows]

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None


def _owner_alive(lease: Lease) -> bool:
    if lease.host != socket.gethostname():
        return True  # cannot tell: only its own host (or --all) may reap it
    try:
        os.kill(lease.owner_pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_leases(store: LeaseStore, *, everything: bool = False,
                experiment: str | None = None) -> list[tuple[Lease, str]]:
    """Undo leases whose owner died or which expired (all of them with ``everything``).

    Returns ``(lease, outcome)`` pairs; outcome is ``undone``, ``gone`` (the embedded
    server died with its owner) or ``unreachable: ...`` (kept for a later cleanup).
    """
    now = time.time()
    out: list[tuple[Lease, str]] = []
    for lease in store.list(experiment):
        expired = lease.expires is not None and lease.expires <= now
        if not (everything or expired or not _owner_alive(lease)):
            continue
        try:
            lease.undo(ProxyApi(lease.api))
            outcome = "undone"
        except ChaosError as exc:
            if lease.embedded and not _owner_alive(lease):
                outcome = "gone"
            else:
                out.append((lease, f"unreachable: {exc}"))
                continue
        store.remove(lease.id)
        out.append((lease, outcome))
    return out
