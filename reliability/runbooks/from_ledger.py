"""The evidence of real failures, read back from the run ledger.

:func:`run_evidence` rebuilds every runbook a run's failures call for (the same evidence the
live SLA monitor renders); :func:`find_evidence` finds the failure behind an alert -- the
latest production failure of a runbook family in a pipeline, optionally of one step or run.
Chaos and exploration runs are never the evidence of a production alert, nor a last good run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import Any

from reliability.events import Event, EventKind
from reliability.runbooks.evidence import Evidence, iso
from reliability.runner.ledger import EXPERIMENT_TRIGGERS, Ledger, RunRecord
from reliability.runs import RunStatus

__all__ = ["FAMILY_EVENTS", "find_evidence", "is_production", "last_good_run",
           "run_evidence"]

# the events each runbook family is rendered from (see reliability.sla.monitor.family_for)
FAMILY_EVENTS: dict[str, tuple[str, ...]] = {
    "sla_breach": ("sla_breached",),
    "stale_pipeline": ("sla_breached",),
    "contract_violation": ("contract_violated",),
    "worker_lost": ("worker_lost",),
    "step_failed": ("step_failed", "contract_violated", "worker_lost"),
    "dependency_unreachable": ("step_failed",),
}
# an alert of the key family is explained by evidence of these families
_EXPLAINED_BY: dict[str, frozenset[str]] = {
    "step_failed": frozenset({"step_failed", "dependency_unreachable", "contract_violation",
                              "worker_lost"}),
    "dependency_unreachable": frozenset({"dependency_unreachable", "step_failed"}),
}
# families whose alerts watch a rate or an age: any recent failure is their evidence
_ANY_FAILURE = frozenset({"sla_breach", "stale_pipeline"})
_FAILURE_EVENTS = ("step_failed", "contract_violated", "worker_lost", "sla_breached")
_SCAN = 50  # recent candidate events looked at per lookup
_ENDED = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})


def is_production(trigger: str | None) -> bool:
    """False for chaos and exploration runs (and their baselines): they are never the
    evidence of a production alert."""
    return trigger not in EXPERIMENT_TRIGGERS


def last_good_run(ledger: Ledger, pipeline: str, *, before: str | None = None
                  ) -> dict[str, Any] | None:
    """The latest succeeded production run of ``pipeline`` other than run ``before``, as
    the runbook's ``last_good_run`` variable."""
    best = ledger.last_good_run(pipeline, before=before)
    if best is None:
        return None
    return {"run_id": best.run_id, "ended_at": iso(best.ended_at),
            "code_version": best.code_version, "interval_start": best.interval_start,
            "interval_end": best.interval_end}


def _event(row: Mapping[str, Any], pipeline: str) -> Event | None:
    try:
        kind = EventKind(row["kind"])
    except ValueError:
        return None
    details = dict(row["details"])
    return Event(kind=kind, pipeline=pipeline, run_id=row["run_id"], step=row["step"],
                 attempt=row["attempt"], time=row["time"],
                 duration=details.pop("duration", None), error=details.pop("error", None),
                 details=details)


def run_evidence(ledger: Ledger, run: RunRecord | str, *, home: str | None = None
                 ) -> list[Evidence]:
    """The evidence of every runbook run ``run``'s failures call for, in order."""
    from reliability.sla.monitor import evidence_for, family_for

    rec = run if isinstance(run, RunRecord) else ledger.get_run(run)
    interval = ({"start": rec.interval_start, "end": rec.interval_end or ""}
                if rec.interval_start else None)
    good: dict[str, Any] | None = None
    faults: list[dict[str, Any]] = []
    violated: set[str] = set()
    out: list[Evidence] = []
    ended = rec.status in _ENDED
    took: dict[str | None, float] = {}
    if ended:
        took = {s["step"]: s["ended_at"] - s["started_at"] for s in ledger.steps(rec.run_id)
                if s["started_at"] is not None and s["ended_at"] is not None}
        if rec.duration is not None:
            took[None] = rec.duration
    for row in ledger.events(rec.run_id):
        ev = _event(row, rec.pipeline)
        if ev is None:
            continue
        if ev.kind is EventKind.FAULT_INJECTED:
            faults.append({"fault": ev.details.get("fault", "unknown"), "step": ev.step,
                           "attempt": ev.attempt})
        if ev.kind is EventKind.CONTRACT_VIOLATED and ev.step:
            violated.add(ev.step)
        family = family_for(ev, violated)
        if family is not None:
            if not out:
                good = last_good_run(ledger, rec.pipeline, before=rec.run_id)
            evidence = evidence_for(ev, family, faults=faults, interval=interval, home=home)
            if ended:
                evidence = evidence.settled(str(rec.status), took)
            out.append(dataclasses.replace(evidence, last_good_run=good))
    return out


def _matches(ev: Evidence, families: Collection[str], step: str | None,
             sla: str | None) -> bool:
    if ev.family not in families or (step and ev.step != step):
        return False
    return not (sla and ev.breach and ev.breach.get("sla") != sla)


def find_evidence(ledger: Ledger, pipeline: str, family: str, *, step: str | None = None,
                  run_id: str | None = None, sla: str | None = None,
                  before: float | None = None, home: str | None = None) -> Evidence | None:
    """The evidence of the latest production failure behind an alert of ``family``.

    ``step``, ``run_id`` and ``sla`` narrow it down (an alert's labels); ``before`` (Unix
    time) skips failures that happened after the alert fired. Alerts on rates and ages
    (error-budget burn, staleness) fall back to the latest failure of any kind, rendered
    with their own family's template. None when the ledger holds no such failure.
    """
    families = _EXPLAINED_BY.get(family, frozenset({family}))
    if run_id is not None:
        found = [e for e in run_evidence(ledger, run_id, home=home)
                 if _matches(e, families, step, sla)]
        return found[0] if found else None
    hit = _latest(ledger, pipeline, FAMILY_EVENTS.get(family, ()), families, step, sla,
                  before, home)
    if hit is None and family in _ANY_FAILURE:
        hit = _latest(ledger, pipeline, _FAILURE_EVENTS, frozenset(FAMILY_EVENTS), step,
                      None, before, home)
        if hit is not None:
            hit = dataclasses.replace(hit, family=family)
    return hit


def _latest(ledger: Ledger, pipeline: str, kinds: tuple[str, ...], families: Collection[str],
            step: str | None, sla: str | None, before: float | None, home: str | None
            ) -> Evidence | None:
    if not kinds:
        return None
    rows = ledger.recent_events(kinds, pipeline=pipeline, step=step or None, limit=_SCAN)
    if before is not None:  # failures up to the alert, else the newest there is
        rows = [r for r in rows if r["time"] <= before] or rows
    seen: set[str] = set()
    for row in rows:
        if row["run_id"] in seen or not is_production(row["trigger"]):
            continue
        seen.add(row["run_id"])
        for ev in reversed(run_evidence(ledger, row["run_id"], home=home)):
            if _matches(ev, families, step, sla):
                return ev
    return None
