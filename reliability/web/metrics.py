"""``/metrics`` fed from the run ledger, for a process that outlives single runs.

The same exporter ``reliability sla serve`` runs and ``reliability serve`` embeds: the run
ledger's events are replayed onto an event bus feeding :class:`PipelineMetrics`, then followed
by polling; with SLAs, deadlines and error budgets are published too. The replay rebuilds
state and creates the series of history at zero; counting starts when the exporter starts,
so a restart is a counter reset to Prometheus and the first new failure an increase.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reliability.errors import ConfigError

__all__ = ["LedgerMetrics"]


class LedgerMetrics:
    """Metrics of every run in ``home``'s ledger; :meth:`start` follows new events."""

    def __init__(self, home: Path, slas: Any = None, *, interval: float = 1.0) -> None:
        from reliability.events import EventBus
        from reliability.runbooks.evidence import LedgerView
        from reliability.sla.metrics import PipelineMetrics
        from reliability.sla.replay import BudgetGauge, DeadlineGauge, LedgerFeed

        blocker = next((d for d in (home, *home.parents) if d.exists() and not d.is_dir()),
                       None)
        if blocker is not None:
            raise ConfigError(f"{blocker} is a file, so {home} cannot be the runner's home",
                              path=("--home",), fix="pass the directory holding ledger.db")
        bus = EventBus()
        self.metrics = PipelineMetrics()
        self.metrics.attach(bus)
        self.registry = self.metrics.registry
        self._budgets = None
        view = LedgerView(home / "ledger.db")
        if slas is not None:
            self.metrics.declare(slas)
            DeadlineGauge(slas, self.metrics).attach(bus)
            self._budgets = BudgetGauge(slas, self.metrics, view)
            self._budgets.attach(bus)
        self.feed = LedgerFeed(view, bus, interval=interval)
        with self.metrics.replaying():
            self.feed.poll()  # a damaged ledger fails here, not in the background
        if self._budgets is not None:
            self._budgets.refresh()  # also for pipelines with no run in the replayed events

    @property
    def ledger_path(self) -> Path:
        return Path(self.feed.view.path)

    def start(self) -> None:
        self.feed.start()

    def stop(self) -> None:
        self.feed.stop()

