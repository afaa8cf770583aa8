"""``reliability serve``: one web server over a home for the on-call loop.

    with serve(".reliability", port=0) as server:
        print(server.url)    # /runs, /runbooks/PIPELINE/FAMILY.html, /alerts, /chaos, /metrics

Pages are plain server-rendered HTML (no JavaScript); Alertmanager posts to
``/alerts/webhook`` (:func:`alertmanager_config` writes its receiver).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reliability._lazy import lazy_exports

if TYPE_CHECKING:
    from reliability.web.alerts import alertmanager_config
    from reliability.web.app import OnCallApp
    from reliability.web.server import OnCallServer, serve

__all__ = ["OnCallApp", "OnCallServer", "alertmanager_config", "serve"]

_WHERE = {"OnCallApp": "app", "OnCallServer": "server", "alertmanager_config": "alerts",
          "serve": "server"}


__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
