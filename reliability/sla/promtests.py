"""``promtool test rules`` suites for the generated rules.

For every alert :func:`~reliability.sla.rules.build_rules` makes, two cases: synthetic
series that must make it fire (with the exact labels and annotations expected), and series
that must leave it silent -- for alerts on run outcomes these include the firing series
again, from chaos and explore runs (``trigger="chaos"``), which never count. A contract
violation fires one alert per step however many checks failed, and its step's failure does
not page again. Run them with ``promtool test rules <file>``.
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
    scope = {**_scope(rule), "trigger": "schedule"}
    fire = [{"series": _series(metric, {**scope, "status": "failed"}), "values": "0+1x70"},
            {"series": _series(metric, {**scope, "status": "succeeded"}), "values": "0x70"}]
    quiet = [{"series": _series(metric, {**scope, "status": "failed"}), "values": "0x70"},
             {"series": _series(metric, {**scope, "status": "succeeded"}),
              "values": "0+1x70"}]
    # every outcome failed for 70 minutes: the error ratio is 1 in every window, short and
    # long, at or past every threshold of both tiers
    return fire, quiet, "70m", True


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
    running = _series("reliability_runs_in_progress", {**scope, "trigger": "schedule"})
    return ([deadline, {"series": running, "values": "1x10"}],
            [deadline, {"series": running, "values": "0x10"}], "5m", True)


_COUNTERS = {
    "breach": ("reliability_sla_breaches_total", {"step": "", "sla": "max_duration"}),
    "violation": ("reliability_step_attempts_total",
                  {"step": "validate", "status": "contract_violated"}),
    "worker_lost": ("reliability_worker_lost_total", {"step": "train"}),
    "step_failed": ("reliability_steps_total", {"step": "train", "status": "failed"}),
}
_CHECKS = ("not_null", "unique", "in_range", "dtype", "min_rows")  # one bad output fails all
_GROUPED = ("status", "trigger")  # labels an alert does not carry


def _counter_series(rule: AlertRule, trigger: str) -> list[str]:
    """The series one bad event makes: for a violation, the attempt's, and one per check
    that failed (which must not split the alert)."""
    metric, labels = _COUNTERS[rule.kind]
    base = {"pipeline": rule.pipeline, **labels, "trigger": trigger}
    if rule.kind == "violation":
        step = {"pipeline": rule.pipeline, "step": labels["step"], "trigger": trigger}
        return [_series(metric, base), *(
            _series("reliability_contract_violations_total",
                    {**step, "contract": "schema", "check": c}) for c in _CHECKS)]
    return [_series(metric, base)]


def _counter(rule: AlertRule) -> tuple[list[dict[str, str]], list[dict[str, str]], str, bool]:
    names = _counter_series(rule, "schedule")
    # fire: series born 3 minutes in (increase() alone would miss them); quiet: flat zero
    return ([{"series": n, "values": "_x2 1x7"} for n in names],
            [{"series": n, "values": "0x10"} for n in names], "5m", True)


def _chaos(rule: AlertRule) -> list[dict[str, str]]:
    """Series of chaos and explore runs that would fire ``rule`` if they counted."""
    if rule.kind in _COUNTERS:
        born = [{"series": n, "values": "_x2 1x7"} for n in _counter_series(rule, "chaos")]
        grown = [{"series": n, "values": "0x2 1x7"} for n in _counter_series(rule, "explore")]
        return born + grown
    if rule.kind.startswith("burn"):  # ten chaos failures to each production success
        metric = "reliability_steps_total" if rule.sla and rule.sla.step else \
            "reliability_runs_total"
        return [{"series": _series(metric, {**_scope(rule), "trigger": t, "status": "failed"}),
                 "values": "0+10x70"} for t in ("chaos", "explore")]
    if rule.kind == "deadline":
        return [{"series": _series("reliability_runs_in_progress",
                                   {"pipeline": rule.pipeline, "trigger": "chaos"}),
                 "values": "1x10"}]
    return []


def _fired_labels(rule: AlertRule) -> dict[str, str]:
    if rule.kind in _COUNTERS:
        _metric, labels = _COUNTERS[rule.kind]
        return {"pipeline": rule.pipeline, **{k: v for k, v in labels.items()
                                              if k not in _GROUPED}}
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
                          "input_series": [*quiet, *_chaos(rule)],
                          "alert_rule_test": [{"eval_time": at, "alertname": rule.alert,
                                               "exp_alerts": []}]})
            if rule.kind == "step_failed":  # its contract violation pages instead, once
                violation = _series("reliability_step_attempts_total", {
                    "pipeline": rule.pipeline, "step": "train", "status": "contract_violated",
                    "trigger": "schedule"})
                tests.append({"name": f"{who} stays silent when the step broke its contract",
                              "interval": "1m",
                              "input_series": [*fire, {"series": violation,
                                                       "values": "_x2 1x7"}],
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
