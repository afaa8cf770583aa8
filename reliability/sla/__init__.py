"""SLA monitoring: SLA specs, event-fed Prometheus metrics, live breach detection, alert
rules, Grafana dashboards and runbooks.

    from reliability.sla import SLAMonitor, load_slas
    with SLAMonitor(load_slas("contracts/reference.sla.yaml"), runner.bus,
                    ledger=runner.ledger, runbooks=RunbookRenderer(["runbooks"])):
        runner.run()

Importing this package is cheap; prometheus_client, jinja2 and grafana-foundation-sdk load
when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reliability._lazy import lazy_exports

if TYPE_CHECKING:
    from reliability.sla.exporter import MetricsServer, push_metrics, serve_metrics
    from reliability.sla.metrics import PipelineMetrics
    from reliability.sla.monitor import Breach, SLAMonitor
    from reliability.sla.rules import generate_rules
    from reliability.sla.spec import SLA, SLO, Deadline, SLASet, load_slas

__all__ = [
    "SLA",
    "SLO",
    "Breach",
    "Deadline",
    "MetricsServer",
    "PipelineMetrics",
    "SLAMonitor",
    "SLASet",
    "generate_rules",
    "load_slas",
    "push_metrics",
    "serve_metrics",
]

_WHERE = {
    "SLA": "spec", "SLO": "spec", "Deadline": "spec", "SLASet": "spec", "load_slas": "spec",
    "Breach": "monitor", "SLAMonitor": "monitor", "PipelineMetrics": "metrics",
    "MetricsServer": "exporter", "push_metrics": "exporter", "serve_metrics": "exporter",
    "generate_rules": "rules",
}


__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
