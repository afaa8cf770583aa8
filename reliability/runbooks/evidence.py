"""The evidence a runbook is rendered with, and a read-only view of the run ledger.

:class:`Evidence` is the typed context of every template: which step, which check and its
failure cases, which fault was injected, the SLA breached, the last good run, and the exact
commands to resume or backfill. :class:`~reliability.runner.ledger.LedgerView` (re-exported
here) reads the ledger on its own read-only connection, so it is safe from any thread while
the runner writes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import field
from typing import Any

from reliability._record import record
from reliability.runner.ledger import LedgerView

__all__ = ["FAMILIES", "Evidence", "LedgerView", "iso", "shell_quote"]

FAMILIES = ("contract_violation", "sla_breach", "worker_lost", "dependency_unreachable",
            "stale_pipeline", "step_failed")


def iso(t: float | None) -> str | None:
    """A Unix time as ISO 8601 UTC, or None."""
    if t is None:
        return None
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")


def _seconds(seconds: float) -> str:
    from reliability.sla.spec import format_duration

    return format_duration(seconds)


def shell_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


@record(frozen=True)
class Evidence:
    """Everything known about one failure; every field is a template variable."""

    family: str
    pipeline: str
    run_id: str
    summary: str
    step: str | None = None
    attempt: int | None = None
    error: str | None = None
    error_type: str | None = None
    occurred_at: str | None = None
    failures: Sequence[Mapping[str, Any]] = ()
    faults: Sequence[Mapping[str, Any]] = ()
    breach: Mapping[str, Any] | None = None
    last_good_run: Mapping[str, Any] | None = None
    interval: Mapping[str, str] | None = None
    home: str | None = None
    runbook_url: str | None = None
    commands: Mapping[str, str] = field(default_factory=dict)
    outcome: str | None = None
    """How the run ended (``succeeded``, ``failed``, ``cancelled``); None while it runs."""

    def __post_init__(self) -> None:
        if not self.commands:
            object.__setattr__(self, "commands", self.default_commands())

    def default_commands(self) -> dict[str, str]:
        """``resume`` unless the run succeeded (nothing is left to resume); ``backfill``
        when the run had a data interval."""
        home = f" --home {shell_quote(self.home)}" if self.home else ""
        cmds: dict[str, str] = {}
        if self.outcome != "succeeded":
            cmds["resume"] = f"reliability resume {shell_quote(self.run_id)}{home}"
        if self.interval:
            cmds["backfill"] = (
                f"reliability backfill {shell_quote(self.pipeline)} --start "
                f"{shell_quote(self.interval['start'])} --end "
                f"{shell_quote(self.interval['end'])}{home}")
        return cmds

    def settled(self, outcome: str | None, took: Mapping[str | None, float] | None = None
                ) -> Evidence:
        """This evidence once its run ended: ``outcome`` decides the commands, and a
        duration breach detected live (while the step, or the run, was still going, so
        observed at the limit) gets how long it finally took from ``took`` (step name, or
        None for the run -> seconds)."""
        breach = self.breach
        if (breach is not None and breach.get("live") and breach.get("sla") == "max_duration"
                and took is not None and self.step in took):
            final = took[self.step]
            breach = {**breach, "took": final, "took_text": _seconds(final)}
        defaults = self.commands == self.default_commands()
        return dataclasses.replace(self, outcome=outcome, breach=breach,
                                   commands={} if defaults else self.commands)

    def variables(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @property
    def slug(self) -> str:
        """File name stem: ``<family>-<step or run>[-<sla>]``."""
        parts = [self.family, self.step or "run"]
        if self.breach and self.breach.get("sla"):
            parts.append(str(self.breach["sla"]))
        return "-".join(p.replace("/", "_") for p in parts)
