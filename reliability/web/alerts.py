"""Alertmanager's webhook: firing alerts stored in the ledger with their runbook rendered
from the evidence of the failure that fired them; resolved alerts marked.

Also writes the Alertmanager configuration whose receiver posts to this server.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reliability._sha import sha256
from reliability.errors import ConfigError
from reliability.runbooks.evidence import Evidence
from reliability.runner.ledger import AlertRecord, Ledger

__all__ = ["ALERT_FAMILIES", "WEBHOOK_PATH", "AlertTarget", "alertmanager_config",
           "parse_webhook", "store_alerts", "target_of"]

WEBHOOK_PATH = "/alerts/webhook"
# the runbook family of each generated alert (reliability.sla.rules), for alerts whose
# runbook_url does not name one
ALERT_FAMILIES = {
    "ReliabilitySLABreached": "sla_breach", "ReliabilityErrorBudgetBurn": "sla_breach",
    "ReliabilityRunPastDeadline": "sla_breach", "ReliabilityContractViolated":
    "contract_violation", "ReliabilityWorkerLost": "worker_lost",
    "ReliabilityStepFailed": "step_failed", "ReliabilityPipelineStale": "stale_pipeline",
    "ReliabilityPipelineNeverSucceeded": "stale_pipeline"}
_RUNBOOK_PATH = re.compile(r"/runbooks/(?P<pipeline>[^/?#]+)/(?P<family>[A-Za-z0-9_]+)\.html")


class _Alert(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(max_length=100)
    annotations: dict[str, str] = Field(default_factory=dict, max_length=100)
    startsAt: str = Field(max_length=64)  # Alertmanager's field names
    endsAt: str | None = Field(default=None, max_length=64)
    fingerprint: str | None = Field(default=None, max_length=128)

    def key(self) -> str:
        if self.fingerprint:
            return self.fingerprint
        text = json.dumps(self.labels, sort_keys=True)
        return sha256(text.encode()).hexdigest()[:16]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    alerts: list[_Alert] = Field(max_length=1000)


def parse_webhook(body: bytes) -> list[_Alert]:
    """The alerts of an Alertmanager webhook body (format version 4)."""
    try:
        payload = _Payload.model_validate_json(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        raise ConfigError(f"not an Alertmanager webhook payload: {err['msg']}",
                          file="request body", path=(where,),
                          fix="post Alertmanager's webhook JSON (version 4)") from None
    return payload.alerts


class AlertTarget(BaseModel):
    """What an alert is about: its pipeline, runbook family and scope."""

    pipeline: str
    family: str
    step: str | None = None
    sla: str | None = None


def target_of(labels: dict[str, str], annotations: dict[str, str]) -> AlertTarget | None:
    """The runbook an alert points at: from its runbook_url, else from its name."""
    m = _RUNBOOK_PATH.search(annotations.get("runbook_url", ""))
    pipeline = labels.get("pipeline") or (m["pipeline"] if m else None)
    family = (m["family"] if m else None) or ALERT_FAMILIES.get(labels.get("alertname", ""))
    if not pipeline or not family:
        return None
    sla = labels.get("sla") or ("success_rate" if labels.get("slo") else None)
    return AlertTarget(pipeline=pipeline, family=family, step=labels.get("step") or None,
                       sla=sla if family == "sla_breach" else None)


def _unix(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def store_alerts(ledger: Ledger, alerts: list[_Alert],
                 render: Callable[[AlertTarget, float | None],
                                  tuple[Evidence | None, str | None]]) -> list[AlertRecord]:
    """Store each alert; a firing one with the runbook ``render`` gives for its target."""
    out = []
    for a in alerts:
        target = target_of(a.labels, a.annotations)
        run_id = runbook = None
        if target is not None and a.status == "firing":
            evidence, runbook = render(target, _unix(a.startsAt))
            run_id = evidence.run_id if evidence is not None else None
        out.append(ledger.record_alert(
            a.key(), a.startsAt, alertname=a.labels.get("alertname", "unnamed"),
            status=a.status, labels=a.labels, annotations=a.annotations,
            ends_at=a.endsAt if a.status == "resolved" else None, run_id=run_id,
            runbook=runbook))
    return out


def alertmanager_config(url: str, *, receiver: str = "reliability",
                        group_by: tuple[str, ...] = ("alertname", "pipeline", "step"),
                        group_wait: str = "10s", group_interval: str = "1m",
                        repeat_interval: str = "4h") -> dict[str, Any]:
    """An Alertmanager configuration posting every alert, and its resolution, to the
    webhook of ``reliability serve`` at ``url``."""
    return {
        "route": {"receiver": receiver, "group_by": list(group_by),
                  "group_wait": group_wait, "group_interval": group_interval,
                  "repeat_interval": repeat_interval},
        "receivers": [{"name": receiver, "webhook_configs": [{
            "url": url.rstrip("/") + WEBHOOK_PATH, "send_resolved": True,
            "max_alerts": 0}]}],
    }
