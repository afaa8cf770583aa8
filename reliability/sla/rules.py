"""Prometheus recording and alerting rules generated from SLA specs.

For each pipeline's :class:`~reliability.sla.spec.SLASet`:

* success-rate SLOs get error-ratio recording rules over 5m..3d and multiwindow,
  multi-burn-rate alerts with the SRE workbook's windows and factors -- page on
  1h/5m x14.4 or 6h/30m x6, ticket on 1d/2h x3 or 3d/6h x1 (each long window paired with a
  short one, so the alert stops soon after the burn stops);
* ``freshness`` becomes a staleness alert on the last-success timestamp;
* ``finish_by`` becomes a running-past-deadline alert on the deadline timestamp;
* breaches reported by the SLA monitor, contract violations, lost workers and failed steps
  alert on new counts -- also counting a series that appeared within the window, which
  ``increase()`` alone would miss. A bad output pages once for its step, however many checks
  it failed (its step's failure does not page a second time).

Only production runs count: every selector leaves out the series of chaos and explore runs
(``trigger`` label, see :mod:`reliability.sla.metrics`).

Every alert carries ``summary``, ``description`` and ``runbook_url`` annotations; the URL is
``<runbook base>/<pipeline>/<family>.html``, with ``?step=<step>`` when the alert is about one
step. The base defaults to the runbook route of ``reliability serve`` (the project file's
``serve.url``, else ``http://127.0.0.1:8080``), which renders each runbook from the ledger's
evidence of the failure that fired it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import field
from typing import Any

from reliability._record import record
from reliability.runs import Trigger
from reliability.sla.spec import SLA, SLASet, format_duration

__all__ = ["BURN_WINDOWS", "PRODUCTION", "AlertRule", "RecordingRule", "RuleSet",
           "build_rules", "burn_threshold", "generate_rules", "rules_document"]

RUNBOOK_ROUTE = "/runbooks"
DEFAULT_RUNBOOK_BASE = "http://127.0.0.1:8080" + RUNBOOK_ROUTE
_STEP_LABEL = "{{ $labels.step }}"
NEW_COUNT_WINDOW = "15m"


@record(frozen=True, slots=True)
class BurnWindow:
    long: str
    short: str
    factor: float
    severity: str


BURN_WINDOWS = (BurnWindow("1h", "5m", 14.4, "page"), BurnWindow("6h", "30m", 6.0, "page"),
                BurnWindow("1d", "2h", 3.0, "ticket"), BurnWindow("3d", "6h", 1.0, "ticket"))
_PACE = {"page": "exhausts it within days",
         "ticket": "will exhaust it before the window ends"}
RATIO_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")


@record(frozen=True, slots=True)
class RecordingRule:
    record: str
    expr: str

    def to_dict(self) -> dict[str, Any]:
        return {"record": self.record, "expr": self.expr}


@record(frozen=True)
class AlertRule:
    """One alerting rule, plus what its generated unit tests need (``kind``, ``sla``)."""

    alert: str
    expr: str
    kind: str
    family: str
    summary: str
    description: str
    runbook_url: str
    labels: dict[str, str] = field(default_factory=dict)
    for_: str | None = None
    pipeline: str = ""
    sla: SLA | None = None

    @property
    def annotations(self) -> dict[str, str]:
        return {"summary": self.summary, "description": self.description,
                "runbook_url": self.runbook_url}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"alert": self.alert, "expr": self.expr}
        if self.for_:
            out["for"] = self.for_
        out["labels"] = dict(self.labels)
        out["annotations"] = self.annotations
        return out


@record(frozen=True)
class RuleSet:
    pipeline: str
    recording: list[RecordingRule]
    alerts: list[AlertRule]


# label matcher of production runs' series (also matches series without the label)
PRODUCTION = f'trigger!~"{"|".join(t.value for t in Trigger if not t.production)}"'


def _sel_any(**labels: str) -> str:
    """A label selector (``name_re`` matches by regex)."""
    parts = []
    for k, v in labels.items():
        op = "=~" if k.endswith("_re") else "="
        parts.append(f'{k.removesuffix("_re")}{op}"{v}"')
    return "{" + ",".join(parts) + "}"


def _sel(**labels: str) -> str:
    """A label selector of production runs' series."""
    return _sel_any(**labels)[:-1] + ("," if labels else "") + PRODUCTION + "}"


def _num(x: float) -> str:
    return f"{x:.6g}"


def burn_threshold(factor: float, budget: float) -> str:
    """The error-ratio comparison of one burn window: ``> factor * budget``.

    An error ratio cannot exceed 1, so when ``factor * budget >= 1`` (a target of 0.9 or
    lower at 14.4x) the workbook's threshold could never be crossed and the page would be
    dead; the clause then fires when every outcome in both windows failed (``>= 1``), the
    fastest burn the SLO can have.
    """
    threshold = factor * budget
    return f"> {_num(threshold)}" if threshold < 1 else ">= 1"


def _new_counts(metric: str, selector: str, by: str) -> str:
    """Counts that grew within the window, including series born within it (at 1: no
    earlier sample, so ``increase()`` alone would miss it).

    Our exporters count from zero when they start -- the ledger-fed one too: it rebuilds
    state from the ledger but creates the counters of history at zero -- so a restart shows
    as a counter reset, never as series born at their totals.
    """
    s, w = f"{metric}{selector}", NEW_COUNT_WINDOW
    return (f"sum by ({by}) (increase({s}[{w}])) > 0 or "
            f"sum by ({by}) ({s} unless {s} offset {w}) > 0")


def _ratio_record(step: str | None, window: str) -> str:
    level = "pipeline_step" if step else "pipeline"
    metric = "reliability_steps" if step else "reliability_runs"
    return f"{level}:{metric}:error_ratio_rate{window}"


def _recording(pipeline: str, sla: SLA) -> list[RecordingRule]:
    step = sla.step
    metric = "reliability_steps_total" if step else "reliability_runs_total"
    by = "pipeline, step" if step else "pipeline"
    scope = {"pipeline": pipeline, **({"step": step} if step else {})}
    bad, all_ = _sel(**scope, status="failed"), _sel(**scope, status_re="succeeded|failed")
    return [RecordingRule(
        _ratio_record(step, w),
        f"sum by ({by}) (rate({metric}{bad}[{w}])) / sum by ({by}) (rate({metric}{all_}[{w}]))")
        for w in RATIO_WINDOWS]


class _Builder:
    def __init__(self, sset: SLASet, base_url: str) -> None:
        self.sset = sset
        self.p = sset.pipeline
        self.base = base_url.rstrip("/")

    def url(self, family: str, step: str | None = None) -> str:
        return f"{self.base}/{self.p}/{family}.html" + (f"?step={step}" if step else "")

    def alert(self, name: str, expr: str, kind: str, family: str, summary: str,
              description: str, *, severity: str = "page", sla: SLA | None = None,
              runbook_step: str | None = None, **labels: str) -> AlertRule:
        """``runbook_step``: the step the runbook is about (the alert's step label)."""
        step = runbook_step or labels.get("step") or (sla.step if sla else None)
        return AlertRule(name, expr, kind, family, summary, description,
                         self.url(family, step), {"severity": severity, **labels},
                         pipeline=self.p, sla=sla)

    def burn(self, sla: SLA) -> list[AlertRule]:
        assert sla.success_rate is not None
        budget = sla.success_rate.error_budget
        scope = {"pipeline": self.p, **({"step": sla.step} if sla.step else {})}
        sel = _sel_any(**scope)  # recorded from production runs only
        what = "step {{ $labels.step }} of pipeline {{ $labels.pipeline }}" if sla.step \
            else "pipeline {{ $labels.pipeline }}"
        out = []
        for severity in ("page", "ticket"):
            clauses = []
            for w in BURN_WINDOWS:
                if w.severity == severity:
                    cmp = burn_threshold(w.factor, budget)
                    clauses.append(f"({_ratio_record(sla.step, w.long)}{sel} {cmp} and "
                                   f"{_ratio_record(sla.step, w.short)}{sel} {cmp})")
            out.append(self.alert(
                "ReliabilityErrorBudgetBurn", " or ".join(clauses), f"burn_{severity}",
                "sla_breach",
                f"{what} is burning its error budget too fast",
                f"The success-rate SLO ({_num(sla.success_rate.target * 100)}% over "
                f"{format_duration(sla.success_rate.window)}) of {what} is burning its error "
                f"budget at a rate that {_PACE[severity]}.",
                severity=severity, sla=sla, slo="success_rate",
                **({"step": sla.step} if sla.step else {})))
        return out

    def for_sla(self, sla: SLA) -> list[AlertRule]:
        out: list[AlertRule] = []
        if sla.success_rate is not None:
            out += self.burn(sla)
        if sla.freshness is not None:
            out += [self._stale(sla), self._never(sla)]
        if sla.finish_by is not None and sla.step is None:
            dl, running = _sel_any(pipeline=self.p), _sel(pipeline=self.p)
            out.append(self.alert(
                "ReliabilityRunPastDeadline",
                f"(time() > reliability_run_deadline_timestamp_seconds{dl}) and on (pipeline) "
                f"(sum by (pipeline) (reliability_runs_in_progress{running}) > 0)",
                "deadline", "sla_breach",
                "pipeline {{ $labels.pipeline }} is still running past its deadline",
                f"A run of pipeline {{{{ $labels.pipeline }}}} has not finished by its "
                f"finish_by deadline ({format_duration(sla.finish_by.offset)} after the "
                f"{sla.finish_by.relative_to.replace('_', ' ')}).",
                severity=sla.severity, sla=sla))
        return out

    def _last_success(self, sla: SLA) -> tuple[str, str, str]:
        """(last-success series selector, who it is about, the freshness as text)."""
        assert sla.freshness is not None
        if sla.step:
            return (f"reliability_step_last_success_timestamp_seconds"
                    f"{_sel_any(pipeline=self.p, step=sla.step)}",
                    "step {{ $labels.step }} of pipeline {{ $labels.pipeline }}",
                    format_duration(sla.freshness))
        return (f"reliability_last_success_timestamp_seconds"
                f"{_sel_any(pipeline=self.p)}",
                "pipeline {{ $labels.pipeline }}", format_duration(sla.freshness))

    def _stale(self, sla: SLA) -> AlertRule:
        assert sla.freshness is not None
        metric, what, fresh = self._last_success(sla)
        return self.alert(
            "ReliabilityPipelineStale", f"time() - {metric} > {_num(sla.freshness)}",
            "stale", "stale_pipeline", f"{what} has not succeeded for over {fresh}",
            f"The last success of {what} is older than its freshness SLA of {fresh}; "
            "consumers are reading stale outputs.", severity=sla.severity, sla=sla,
            **({"step": sla.step} if sla.step else {}))

    def _never(self, sla: SLA) -> AlertRule:
        """No success on record at all for longer than the freshness limit: the staleness
        alert cannot see a pipeline whose last-success series never appeared."""
        assert sla.freshness is not None
        metric, what, fresh = self._last_success(sla)
        rule = self.alert(
            "ReliabilityPipelineNeverSucceeded", f"absent({metric})", "never", "stale_pipeline",
            f"{what} has no success on record for over {fresh}",
            f"No success of {what} has been exported for longer than its freshness SLA of "
            f"{fresh}: it never ran, every run failed, or its exporter lost the ledger.",
            severity=sla.severity, sla=sla, **({"step": sla.step} if sla.step else {}))
        return dataclasses.replace(rule, for_=f"{math.ceil(sla.freshness)}s")

    def common(self) -> list[AlertRule]:
        sel = _sel(pipeline=self.p)
        step_what = "step {{ $labels.step }} of pipeline {{ $labels.pipeline }}"
        # one per output that broke its contract, however many of its checks failed
        violations = _new_counts("reliability_step_attempts_total",
                                 _sel(pipeline=self.p, status="contract_violated"),
                                 "pipeline, step")
        failed = _new_counts("reliability_steps_total", _sel(pipeline=self.p, status="failed"),
                             "pipeline, step")
        return [
            self.alert(
                "ReliabilitySLABreached",
                _new_counts("reliability_sla_breaches_total",
                            _sel(pipeline=self.p, sla_re="max_duration|finish_by"),
                            "pipeline, step, sla"),
                "breach", "sla_breach",
                "{{ $labels.sla }} SLA breached in pipeline {{ $labels.pipeline }}",
                "The SLA monitor reported a {{ $labels.sla }} breach for "
                "{{ $labels.step }} in pipeline {{ $labels.pipeline }} (an empty step is the "
                "whole run).", severity="page", runbook_step=_STEP_LABEL),
            self.alert(
                "ReliabilityContractViolated", violations,
                "violation", "contract_violation",
                "output of " + step_what + " broke its contract",
                f"The output of {step_what} failed checks of its data contract (the run's "
                "runbook lists each); it was quarantined and downstream steps skipped.",
                severity="page", runbook_step=_STEP_LABEL),
            self.alert(
                "ReliabilityWorkerLost",
                _new_counts("reliability_worker_lost_total", sel, "pipeline, step"),
                "worker_lost", "worker_lost", "a worker died running " + step_what,
                f"A worker process died mid-attempt while running {step_what}; the attempt "
                "was retried on a fresh worker if its retry policy allows.",
                severity="ticket", runbook_step=_STEP_LABEL),
            self.alert(
                "ReliabilityStepFailed",
                # a step failed by a contract violation pages as that, once
                f"({failed}) unless on (pipeline, step) ({violations})",
                "step_failed", "step_failed", step_what + " failed",
                f"{step_what} failed after its retries; its downstream steps were skipped.",
                severity="page", runbook_step=_STEP_LABEL),
        ]


def build_rules(sset: SLASet, *, runbook_base_url: str | None = None) -> RuleSet:
    """The recording and alerting rules of one pipeline's SLAs."""
    base = runbook_base_url or sset.runbook_base_url or DEFAULT_RUNBOOK_BASE
    b = _Builder(sset, base)
    recording: list[RecordingRule] = []
    alerts: list[AlertRule] = []
    for sla in sset:
        if sla.success_rate is not None:
            recording += _recording(sset.pipeline, sla)
        alerts += b.for_sla(sla)
    alerts += b.common()
    return RuleSet(sset.pipeline, recording, alerts)


def rules_document(rulesets: Iterable[RuleSet]) -> dict[str, Any]:
    """A Prometheus rule file (``groups:``) as a plain structure."""
    groups: list[dict[str, Any]] = []
    for rs in rulesets:
        if rs.recording:
            groups.append({"name": f"reliability.{rs.pipeline}.slo",
                           "rules": [r.to_dict() for r in rs.recording]})
        groups.append({"name": f"reliability.{rs.pipeline}.alerts",
                       "rules": [a.to_dict() for a in rs.alerts]})
    return {"groups": groups}


def generate_rules(slas: SLASet | Iterable[SLASet], *, runbook_base_url: str | None = None
                   ) -> str:
    """The Prometheus rule file for ``slas`` as YAML text."""
    import yaml

    sets = [slas] if isinstance(slas, SLASet) else list(slas)
    doc = rules_document(build_rules(s, runbook_base_url=runbook_base_url) for s in sets)
    return str(yaml.safe_dump(doc, sort_keys=False, width=1000))
