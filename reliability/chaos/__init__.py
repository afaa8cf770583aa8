"""Chaos engineering for pipelines: fault injection against real network paths.

``ProxyServer`` is an embedded Toxiproxy-compatible server (see
:mod:`reliability.chaos.proxy`). It is imported lazily so ``import
reliability.chaos`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reliability.chaos.proxy import ProxyServer

__all__ = ["ProxyServer"]


def __getattr__(name: str) -> Any:
    if name == "ProxyServer":
        from reliability.chaos.proxy import ProxyServer

        return ProxyServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
