"""The experiment's target services and proxy server, in a helper process of their own.

Workers are forked from the runner's process and inherit its file descriptors. A proxy
server (or a service) listening *inside* that process would therefore leave copies of its
listening sockets in every worker: disabling a proxy would close the server's copy while a
worker's copy kept the port in LISTEN, so clients would hang instead of being refused. The
helper process (started with ``spawn``) owns every listening socket, so a disabled proxy is
really down.

The helper ignores SIGINT: a Ctrl-C reaches the whole foreground process group, and the
interrupted experiment must still roll back through the proxy server. The helper stops when
its parent says so or dies (the pipe closes).

    with TargetProcess({"wine": "pipelines.wine_service:WineService"}) as t:
        t.api_url, t.ports["wine"]
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import signal
from collections.abc import Mapping
from contextlib import ExitStack, suppress
from multiprocessing.connection import Connection
from typing import Any

from reliability.errors import ChaosError, ConfigError

__all__ = ["TargetProcess"]


def _serve(conn: Connection, services: dict[str, str], proxy: bool,
           seed: int | None = None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent still rolls back
    with ExitStack() as stack:
        try:
            ports: dict[str, int] = {}
            for name, ref in services.items():
                mod, _, attr = ref.partition(":")
                factory = getattr(importlib.import_module(mod), attr)
                ports[name] = int(stack.enter_context(factory()).port)
            api_url = None
            if proxy:
                from reliability.chaos.proxy import ProxyServer

                api_url = stack.enter_context(ProxyServer(port=0, seed=seed)).url
        except BaseException as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
            return
        conn.send(("ready", (api_url, ports)))
        with suppress(EOFError, OSError):
            conn.recv()  # any message, or EOF when the parent dies, stops the target


class TargetProcess:
    """Start ``services`` (name -> 'module:Class' with ``.port``) and, if ``proxy``, an
    embedded Toxiproxy-compatible server (its random source seeded with ``seed``), in a
    spawned process."""

    def __init__(self, services: Mapping[str, str] | None = None, *, proxy: bool = True,
                 start_timeout: float = 60.0, seed: int | None = None) -> None:
        self.services = dict(services or {})
        self.seed = seed
        self.proxy = proxy
        self.start_timeout = start_timeout
        self.api_url: str | None = None
        self.ports: dict[str, int] = {}
        self._proc: Any = None
        self._conn: Connection | None = None

    def __enter__(self) -> TargetProcess:
        for name, ref in self.services.items():
            if ":" not in ref:
                raise ConfigError(f"service {name!r}: start={ref!r} is not 'module:Class'",
                                  path=["target", "services", name, "start"],
                                  fix="write e.g. pipelines.wine_service:WineService")
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, self.services, self.proxy, self.seed),
                                 name="reliability-chaos-target", daemon=True)
        self._proc.start()
        child.close()
        self._conn = parent
        try:
            self.api_url, self.ports = self._wait_ready(parent)
        except BaseException:  # not started, or interrupted while starting: stop it
            self.__exit__()
            raise
        return self

    def _wait_ready(self, conn: Connection) -> tuple[str | None, dict[str, int]]:
        if not conn.poll(self.start_timeout):
            raise ChaosError(f"the chaos target did not start within {self.start_timeout}s")
        try:
            status, payload = conn.recv()
        except EOFError:
            status, payload = "error", "the target process died while starting"
        if status != "ready":
            raise ChaosError(f"the chaos target could not start: {payload}. Fix: check "
                             "target.services (module:Class importable, with a .port)")
        api_url, ports = payload
        return api_url, dict(ports)

    def __exit__(self, *exc: object) -> None:
        if self._conn is not None:
            with suppress(OSError):
                self._conn.send("stop")
            self._conn.close()
            self._conn = None
        if self._proc is not None:
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(5)
            self._proc = None
