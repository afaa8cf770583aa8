"""Every generated alert fires on its first occurrence, in a real Prometheus scraping a real
exporter: the run's own ``--metrics-port`` exporter and the ledger-fed ``reliability sla
serve``.

Each scenario starts the exporter and Prometheus, then breaks the pipeline once
(``tests/alert_pipelines.py``, ``mode=bad``) and waits for every alert the rule generator
emitted for its SLAs to show up as firing in ``/api/v1/alerts``. The rules are the generated
ones, unchanged; Prometheus scrapes and evaluates every 200 ms so the test stays fast.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from alert_pipelines import SCORE_CONTRACT, SLAS
from helpers import binary, free_port, start, stop, subprocess_env, wait_for

from reliability.runner import Ledger
from reliability.runs import Trigger
from reliability.sla import generate_rules, load_slas
from reliability.sla.rules import AlertRule, build_rules

pytestmark = pytest.mark.integration

Key = tuple[str, str, str, str]  # alertname, severity, step ('' = run), sla
TICK = "200ms"


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def _up(url: str, says: bytes = b"") -> bool:
    """Whether ``url`` answers 200 (with ``says`` in its body)."""
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200 and says in resp.read())
    except OSError:
        return False


@dataclass
class AlertWatch:
    """Polls ``/api/v1/alerts`` and keeps when each firing alert was first seen, and when
    the exporter was first scraped."""

    api: str
    target_up: float | None = None
    first: dict[Key, float] = field(default_factory=dict)
    seen: dict[Key, set[str]] = field(default_factory=dict)  # distinct label sets per key
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                if self.target_up is None and any(
                        t["health"] == "up"
                        for t in get_json(f"{self.api}/targets")["data"]["activeTargets"]):
                    self.target_up = time.time()
                alerts = get_json(f"{self.api}/alerts")["data"]["alerts"]
            except (OSError, ValueError, KeyError):
                alerts = []
            now = time.time()
            for a in alerts:
                if a["state"] != "firing":
                    continue
                labels = a["labels"]
                key = (labels["alertname"], labels.get("severity", ""),
                       labels.get("step", ""), labels.get("sla", ""))
                self.first.setdefault(key, now)
                self.seen.setdefault(key, set()).add(json.dumps(labels, sort_keys=True))
            self._stop.wait(0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@contextmanager
def prometheus(tmp_path: Path, target_port: int, rules: str) -> Iterator[tuple[str, float]]:
    """A Prometheus on a free port scraping ``127.0.0.1:target_port`` with ``rules``: its
    API URL and the time it became ready."""
    prom = binary("prometheus")
    (tmp_path / "rules.yml").write_text(rules)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": TICK, "scrape_timeout": TICK,
                   "evaluation_interval": TICK},
        "rule_files": [str(tmp_path / "rules.yml")],
        "scrape_configs": [{"job_name": "reliability", "static_configs": [
            {"targets": [f"127.0.0.1:{target_port}"]}]}]}))
    port = free_port()
    proc = start([prom, f"--config.file={tmp_path / 'prometheus.yml'}",
                  f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                  f"--web.listen-address=127.0.0.1:{port}"], tmp_path / "prometheus.log")
    try:
        wait_for(lambda: proc.poll() is not None or _up(f"http://127.0.0.1:{port}/-/ready",
                                                         b"Prometheus"),
                 60, "Prometheus to be ready")
        assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()
        yield f"http://127.0.0.1:{port}/api/v1", time.time()
    finally:
        stop(proc)


def make_project(root: Path) -> Path:
    """A project of ``alert_pipelines.pipeline`` with its contract and SLAs; its home."""
    (root / "contracts").mkdir(parents=True)
    (root / "contracts" / "score.output.yaml").write_text(SCORE_CONTRACT)
    (root / "alertdemo.sla.yaml").write_text(SLAS)
    (root / "reliability.yaml").write_text(
        "pipeline: alert_pipelines:pipeline\nhome: home\nsla: alertdemo.sla.yaml\nworkers: 3\n")
    return root / "home"


def cli(root: Path, log: Path, *args: str) -> Any:
    env = subprocess_env(RELIABILITY_HOME=str(root / "home"))
    return start([sys.executable, "-m", "reliability.cli.main", *args], log, cwd=root,
                 env=env)


def run_to_end(root: Path, log: Path, *args: str, status: int = 0) -> None:
    """Run the pipeline through the CLI; its exit status must be ``status``."""
    proc = cli(root, log, "run", "--new", *args)
    try:
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            stop(proc)
    assert proc.returncode == status, log.read_text()


def _events(home: Path) -> tuple[str, list[dict[str, Any]], float | None]:
    """The newest run's id and events, and when the last good run before it ended."""
    with Ledger(home / "ledger.db") as led:
        run = led.list_runs("alertdemo", limit=1)[0]
        good = led.last_good_run("alertdemo")
        return run.run_id, led.events(run.run_id), good.ended_at if good else None


def occurrences(rule: AlertRule, events: list[dict[str, Any]], ready: float, scraped: float,
                last_good: float | None) -> dict[Key, float]:
    """The alerts ``rule`` must fire after the bad run, and when each condition began to
    hold where Prometheus could see it (``ready``: Prometheus is up; ``scraped``: it first
    scraped the exporter)."""
    sev = rule.labels.get("severity", "")
    step = rule.sla.step or "" if rule.sla else ""

    def at(kind: str, step: str | None = None, **details: str) -> float:
        for ev in events:
            if ev["kind"] == kind and (step is None or ev["step"] == step) and all(
                    ev["details"].get(k) == v for k, v in details.items()):
                return float(ev["time"])
        raise AssertionError(f"no {kind} event {step} {details} in the run: {events}")

    kind = rule.kind
    if kind.startswith("burn"):
        when = at("step_failed", step) if step else at("run_failed")
        return {(rule.alert, sev, step, ""): when}
    if kind == "stale":  # the last success grew older than the freshness SLA
        assert rule.sla is not None and rule.sla.freshness is not None
        return {} if last_good is None else {
            (rule.alert, sev, step, ""): max(scraped, last_good + rule.sla.freshness)}
    if kind == "never":  # no success seen for as long as the freshness SLA (its `for:`)
        assert rule.sla is not None and rule.sla.freshness is not None
        return {} if last_good is not None else {
            (rule.alert, sev, step, ""): ready + rule.sla.freshness}
    if kind == "deadline":
        return {(rule.alert, sev, "", ""): at("sla_breached", sla="finish_by")}
    if kind == "breach":
        return {(rule.alert, sev, ev["step"] or "", ev["details"]["sla"]): float(ev["time"])
                for ev in events if ev["kind"] == "sla_breached"
                and ev["details"]["sla"] in ("max_duration", "finish_by")}
    if kind == "violation":
        return {(rule.alert, sev, "score", ""): at("contract_violated", "score")}
    if kind == "worker_lost":
        return {(rule.alert, sev, "crashy", ""): at("worker_lost", "crashy")}
    if kind == "step_failed":
        return {(rule.alert, sev, "load", ""): at("step_failed", "load")}
    raise AssertionError(f"no first-occurrence case for alert kind {kind!r} ({rule.alert})")


@pytest.mark.parametrize("history", [False, True], ids=["fresh-home", "after-a-success"])
@pytest.mark.parametrize("exporter", ["run", "serve"])
def test_every_generated_alert_fires_on_its_first_occurrence(
        tmp_path: Path, exporter: str, history: bool) -> None:
    root = tmp_path / "project"
    home = make_project(root)
    sset = load_slas(root / "alertdemo.sla.yaml")
    rs = build_rules(sset)
    if history:  # a success 2 s (the freshness SLA) before the exporter starts is stale
        run_to_end(root, tmp_path / "ok-run.log", "-p", "slow=0")
    port = free_port()
    serve = None
    if exporter == "serve":
        serve = cli(root, tmp_path / "serve.log", "sla", "serve", "--port", str(port),
                    "--interval", "0.2")
    watch = None
    try:
        if serve is not None:
            wait_for(lambda: serve.poll() is not None or _up(f"http://127.0.0.1:{port}/"),
                     60, "`reliability sla serve` to answer")
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()
        with prometheus(tmp_path, port, generate_rules(sset)) as (api, ready):
            watch = AlertWatch(api)
            if serve is not None:
                wait_for(lambda: any(t["health"] == "up" for t in get_json(
                    f"{api}/targets")["data"]["activeTargets"]), 30, "the first scrape")
                run_to_end(root, tmp_path / "bad-run.log", "-p", "mode=bad", status=1)
            else:  # the run's own exporter: Prometheus must have scraped it once
                gate = tmp_path / "scraped"  # before the run breaks (its first scrape of
                proc = cli(root, tmp_path / "bad-run.log", "run", "--new", "-p", "mode=bad",
                           "-p", f"gate={gate}", "--metrics-port", str(port))
                try:  # a new target can take seconds to come)
                    wait_for(lambda: watch.target_up is not None or proc.poll() is not None,
                             60, "Prometheus to scrape the run's exporter")
                    gate.touch()
                    proc.wait(timeout=120)
                finally:
                    if proc.poll() is None:
                        stop(proc)
                assert proc.returncode == 1, (tmp_path / "bad-run.log").read_text()
            run_id, events, last_good = _events(home)
            assert watch.target_up is not None
            expected: dict[Key, float] = {}
            for rule in rs.alerts:
                expected.update(occurrences(rule, events, ready, watch.target_up, last_good))
            deadline = time.monotonic() + 30
            while not set(expected) <= set(watch.first) and time.monotonic() < deadline:
                time.sleep(0.05)
            watch.close()
        fired = {k: round(watch.first[k] - t, 2) for k, t in expected.items()
                 if k in watch.first}
        report = {"exporter": exporter, "history": history, "run": run_id,
                  "seconds_to_fire": {" ".join(x for x in k if x): v
                                      for k, v in sorted(fired.items())}}
        print(json.dumps(report, indent=1))
        missing = sorted(set(expected) - set(watch.first))
        assert not missing, f"never fired: {missing}; fired: {fired}"
        # one bad output, one page: one alert for its step (not one per failed check), and
        # its step's failure does not page again (load failed later and did page)
        assert len(watch.seen[("ReliabilityContractViolated", "page", "score", "")]) == 1
        assert ("ReliabilityStepFailed", "page", "score", "") not in watch.first
    finally:
        if watch is not None:
            watch.close()
        if serve is not None:
            stop(serve)


def _query(api: str, q: str) -> list[dict[str, Any]]:
    return list(get_json(f"{api}/query?query={urllib.parse.quote(q)}")["data"]["result"])


def test_explore_runs_page_nobody_and_leave_the_budget_and_last_good_run_alone(
        tmp_path: Path) -> None:
    """`chaos explore` kills workers on purpose in the production ledger: its runs count in
    their own series (``trigger="explore"``), fire no production alert, spend no error
    budget and are never the last good run."""
    root = tmp_path / "project"
    home = make_project(root)
    sla = SLAS.replace("  freshness: 2s\n", "")  # no production run at all: not stale
    (root / "alertdemo.sla.yaml").write_text(sla)
    port = free_port()
    serve = cli(root, tmp_path / "serve.log", "sla", "serve", "--port", str(port),
                "--interval", "0.2")
    try:
        wait_for(lambda: serve.poll() is not None or _up(f"http://127.0.0.1:{port}/"), 60,
                 "`reliability sla serve` to answer")
        with prometheus(tmp_path, port, generate_rules(load_slas(root / "alertdemo.sla.yaml"))
                        ) as (api, _ready):
            explore = cli(root, tmp_path / "explore.log", "chaos", "explore", "--steps",
                          "load,crashy", "--kinds", "kill_worker", "--max-examples", "4",
                          "--param", "slow=1.5", "--budget", "60")
            try:
                explore.wait(timeout=300)
            finally:
                if explore.poll() is None:
                    stop(explore)
            with Ledger(home / "ledger.db") as led:
                runs = led.list_runs("alertdemo", limit=100)
                lost = sum(1 for r in runs for e in led.events(r.run_id, "worker_lost"))
                assert led.last_good_run("alertdemo") is None  # the explore baseline is not
            assert {r.trigger for r in runs} == {Trigger.EXPLORE}  # the baseline too
            assert lost > 0 and any(r.status == "failed" for r in runs), \
                (tmp_path / "explore.log").read_text()
            # Prometheus has the explore runs' losses and failures, in their own series ...
            explored = 'pipeline="alertdemo",trigger="explore"'
            wait_for(lambda: _query(api, f"sum(reliability_worker_lost_total{{{explored}}})"
                                         f" >= {lost}")
                     and _query(api, f'reliability_runs_total{{{explored},status="failed"}} > 0'),
                     30, "Prometheus to scrape the explore runs")
            seen = time.time()
            # ... and has evaluated every rule group twice since
            wait_for(lambda: all(
                _evaluated(g["lastEvaluation"]) > seen + 0.4
                for g in get_json(f"{api}/rules")["data"]["groups"]), 30,
                "the rules to be evaluated on them")
            active = get_json(f"{api}/alerts")["data"]["alerts"]
            assert active == [], active
            budget = _query(api, 'reliability_error_budget_remaining_ratio'
                                 '{pipeline="alertdemo",step=""}')
            assert [float(b["value"][1]) for b in budget] == [1.0]  # nothing spent
    finally:
        stop(serve)


def _evaluated(stamp: str) -> float:
    """Unix time of a Prometheus RFC 3339 timestamp (nanoseconds cut to microseconds)."""
    import datetime as dt
    import re

    text = re.sub(r"(\.\d{6})\d+", r"\1", stamp).replace("Z", "+00:00")
    return dt.datetime.fromisoformat(text).timestamp()
