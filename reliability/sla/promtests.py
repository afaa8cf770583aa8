"""``promtool test rules`` suites for the generated rules.

For every alert :func:`~reliability.sla.rules.build_rules` makes, two cases: synthetic
series that must make it fire (with the exact labels and annotations expected) and series
that must leave it silent. Run them with ``promtool test rules <file>``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from reliability.sla.rules import AlertRule, RuleSet

__all__ = ["generate_rule_tests", "rule_tests_document"]

_LABEL_REF = re.compile(r"\{\{ \$labels\.(\w+) \}\}")


def _series(metric: str, labels: dict[str, str]) -> str:
    body = ",".join(f'{k}="{v}"' for k, v in labels.items() if v)
    return f"{metric}{{{body}}}"


def _expected(rule: AlertRule, labels: dict[str, str]) -> dict[str, Any]:
    all_labels = {k: v for k, v in {**labels, **rule.labels}.items() if v}

    def expand(text: str) -> str:
        return _LABEL_REF.sub(lambda m: all_labels.get(m.group(1), ""), text)

    return {"exp_labels": all_labels,
            "exp_annotations": {k: expand(v) for k, v in rule.annotations.items()}}


def _scope(rule: AlertRule) -> dict[str, str]:
    step = rule.sla.step if rule.sla else None
    return {"pipeline": rule.pipeline, **({"step": step} if step else {})}


def _burn(rule: AlertRule) -> tuple[list[dict[str, str]], list[dict[str, str]], str, bool]:
    assert rule.sla is not None and rule.sla.success_rate is not None
    metric = "reliability_steps_total" if rule.sla.step else "reliability_runs_total"
    scope = _scope(rule)
    fire = [{"series": _series(metric, {**scope, "status": "failed"}), "values": "0+1x240"},
            {"series": _series(metric, {**scope, "status": "succeeded"}), "values": "0x240"}]
    quiet = [{"series": _series(metric, {**scope, "status": "failed"}), "values": "0x240"},
             {"series": _series(metric, {**scope, "status": "succeeded"}),
              "values": "0+1x240"}]
    # every outcome failed for 4 hours: the error ratio is 1, at or past every threshold
    # of the page tier (the 3d/1d windows of the ticket tier see it too)
    return fire, quiet, "240m", True


def _last_success(rule: AlertRule) -> tuple[str, int]:
    """The last-success metric of a freshness rule, and minutes past its limit to test at."""
    assert rule.sla is not None and rule.sla.freshness is not None
    metric = ("reliability_step_last_success_timestamp_seconds" if rule.sla.step
              else "reliability_last_success_timestamp_seconds")
    return metric, math.ceil(rule.sla.freshness / 60) + 5


def _stale(rule: AlertRule) -> tuple[list[dict[str, str]], list[dict[str, str]], str, bool]:
    metric, minutes = _last_success(rule)
    name = _series(metric, _scope(rule))
    return ([{"series": name, "values": f"0x{minutes}"}],
            [{"series": name, "values": f"0+60x{minutes}"}], f"{minutes}m", True)


def _never(rule: AlertRule) -> tuple[list[dict[str, str]], list[dict[str, str]], str, bool]:
    metric, minutes = _last_success(rule)
    # fire: only another pipeline ever succeeded; quiet: this one did, long ago (that is
    # the staleness alert's business, not this one's)
    other = _series(metric, {**_scope(rule), "pipeline": f"{rule.pipeline}-other"})
    return ([{"series": other, "values": f"0x{minutes}"}],
            [{"series": _series(metric, _scope(rule)), "values": f"0x{minutes}"}],
            f"{minutes}m", True)


def _deadline(rule: AlertRule) -> tuple[list[dict[str, str]], list[dict[str, str]], str, bool]:
    scope = {"pipeline": rule.pipeline}
    deadline = {"series": _series("reliability_run_deadline_timestamp_seconds", scope),
                "values": "60x10"}
    running = _series("reliability_runs_in_progress", scope)
    return ([deadline, {"series": running, "values": "1x10"}],
            [deadline, {"series": running, "values": "0x10"}], "5m", True)


_COUNTERS = {
    "breach": ("reliability_sla_breaches_total", {"step": "", "sla": "max_duration"}),
    "violation": ("reliability_contract_violations_total",
                  {"step": "validate", "contract": "schema", "check": "not_null"}),
    "worker_lost": ("reliability_worker_lost_total", {"step": "train"}),
    "step_failed": ("reliability_steps_total", {"step": "train", "status": "failed"}),
}


def _counter(rule: AlertRule) -> tuple[list[dict[str, str]], list[dict[str, str]], str, bool]:
    metric, labels = _COUNTERS[rule.kind]
    name = _series(metric, {"pipeline": rule.pipeline, **labels})
    # fire: a series born 3 minutes in (increase() alone would miss it); quiet: flat zero
    return ([{"series": name, "values": "_x2 1x7"}], [{"series": name, "values": "0x10"}],
            "5m", True)


def _fired_labels(rule: AlertRule) -> dict[str, str]:
    if rule.kind in _COUNTERS:
        _metric, labels = _COUNTERS[rule.kind]
        return {"pipeline": rule.pipeline, **{k: v for k, v in labels.items()
                                              if k != "status"}}
    return _scope(rule) if rule.kind.startswith("burn") or rule.kind in ("stale", "never") \
        else {"pipeline": rule.pipeline}


_CASES = {"burn_page": _burn, "burn_ticket": _burn, "stale": _stale, "never": _never,
          "deadline": _deadline,
          **dict.fromkeys(_COUNTERS, _counter)}


def rule_tests_document(rulesets: Iterable[RuleSet], rule_file: str) -> dict[str, Any]:
    """The ``promtool test rules`` file for ``rulesets`` (rules read from ``rule_file``)."""
    tests: list[dict[str, Any]] = []
    for rs in rulesets:
        for rule in rs.alerts:
            if rule.kind == "burn_ticket":
                continue  # tested with its page sibling: both share the alert name
            fire, quiet, at, _ = _CASES[rule.kind](rule)
            who = f"{rule.alert} ({rule.kind}, {rule.pipeline}"
            who += f"/{rule.sla.step})" if rule.sla and rule.sla.step else ")"
            expected = [_expected(r, _fired_labels(r)) for r in _siblings(rule, rs.alerts)
                        if _CASES[r.kind](r)[3]]
            tests.append({"name": f"{who} fires", "interval": "1m", "input_series": fire,
                          "alert_rule_test": [{"eval_time": at, "alertname": rule.alert,
                                               "exp_alerts": expected}]})
            tests.append({"name": f"{who} stays silent", "interval": "1m",
                          "input_series": quiet,
                          "alert_rule_test": [{"eval_time": at, "alertname": rule.alert,
                                               "exp_alerts": []}]})
    return {"rule_files": [rule_file], "evaluation_interval": "1m", "tests": tests}


def _siblings(rule: AlertRule, alerts: list[AlertRule]) -> list[AlertRule]:
    """The rule, and for burn alerts the other severity of the same SLO (same name)."""
    if not rule.kind.startswith("burn"):
        return [rule]
    return [r for r in alerts if r.kind.startswith("burn") and r.sla is rule.sla]


def generate_rule_tests(rulesets: Iterable[RuleSet], rule_file: str) -> str:
    import yaml

    doc = rule_tests_document(rulesets, rule_file)
    return str(yaml.safe_dump(doc, sort_keys=False, width=1000))
