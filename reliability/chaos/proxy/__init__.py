"""Embedded Toxiproxy-compatible server: the Toxiproxy 2.x HTTP API on asyncio.

Any Toxiproxy client (``toxiproxy-python``, the Go client, ``toxiproxy-cli``)
drives it unchanged, so an experiment written against it runs against a real
Toxiproxy by changing one address.

- :class:`ProxyServer` -- background thread + event loop; ``start()``/``stop()``
  or ``with ProxyServer(port=0) as server:``.
- :class:`AsyncProxyServer` -- the same inside a running loop
  (``async with AsyncProxyServer(port=0) as server:``).
- :func:`load_config` -- read Toxiproxy's JSON config format (list of proxies).
"""

from __future__ import annotations

from reliability.chaos.proxy.config import load_config
from reliability.chaos.proxy.embedded import ProxyServer
from reliability.chaos.proxy.errors import ApiError, ProxyServerError
from reliability.chaos.proxy.server import DEFAULT_HOST, DEFAULT_PORT, VERSION, AsyncProxyServer
from reliability.chaos.proxy.toxics import TOXIC_TYPES

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "TOXIC_TYPES",
    "VERSION",
    "ApiError",
    "AsyncProxyServer",
    "ProxyServer",
    "ProxyServerError",
    "load_config",
]
