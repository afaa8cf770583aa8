"""The generated alert rules in promtool: one bad output pages once, for its step; series of
chaos and explore runs page nobody."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import binary

from reliability.sla import SLA, SLO, SLASet, generate_rules
from reliability.sla.rules import build_rules

pytestmark = pytest.mark.integration


def promtool_test(tmp_path: Path, sset: SLASet, series: list[dict[str, str]],
                  checks: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    (tmp_path / "rules.yml").write_text(generate_rules(sset))
    case = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": [
        {"interval": "1m", "input_series": series, "alert_rule_test": checks}]}
    (tmp_path / "t.yml").write_text(yaml.safe_dump(case))
    return subprocess.run([binary("promtool"), "test", "rules", "t.yml"], cwd=tmp_path,
                          capture_output=True, text=True, check=False)


def test_one_bad_output_pages_once_for_its_step(tmp_path: Path) -> None:
    """Five checks of one contract failed on one output: one ContractViolated alert for the
    step (no contract or check label to split it), and no StepFailed page on top."""
    sset = SLASet("etl", [SLA(max_duration=60)])
    checks = ("a_in_range", "b_in_range", "c_in_range", "d_in_range", "e_in_range")
    series = [{"series": f'reliability_contract_violations_total{{pipeline="etl",'
                         f'step="score",contract="etl.score.output",check="{c}",'
                         f'trigger="manual"}}', "values": "_x2 1x7"} for c in checks]
    series.append({"series": 'reliability_step_attempts_total{pipeline="etl",step="score",'
                             'status="contract_violated",trigger="manual"}',
                   "values": "0x2 1x7"})
    series.append({"series": 'reliability_steps_total{pipeline="etl",step="score",'
                             'status="failed",trigger="manual"}', "values": "0x2 1x7"})
    series.append({"series": 'reliability_steps_total{pipeline="etl",step="load",'
                             'status="failed",trigger="manual"}', "values": "0x2 1x7"})
    rules = {r.kind: r for r in build_rules(sset).alerts}

    def alert(kind: str, step: str) -> dict[str, Any]:
        def expand(text: str) -> str:
            return text.replace("{{ $labels.step }}", step).replace(
                "{{ $labels.pipeline }}", "etl")

        return {"exp_labels": {"pipeline": "etl", "step": step, "severity": "page"},
                "exp_annotations": {k: expand(v) for k, v in rules[kind].annotations.items()}}

    assert alert("violation", "score")["exp_annotations"]["summary"] == \
        "output of step score of pipeline etl broke its contract"
    proc = promtool_test(tmp_path, sset, series, [
        {"eval_time": "5m", "alertname": "ReliabilityContractViolated",
         "exp_alerts": [alert("violation", "score")]},
        # the step that failed for another reason still pages; the violated one does not
        {"eval_time": "5m", "alertname": "ReliabilityStepFailed",
         "exp_alerts": [alert("step_failed", "load")]}])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_chaos_and_explore_series_fire_no_production_alert(tmp_path: Path) -> None:
    """Everything an alert watches, failing hard -- but only in experiment runs' series."""
    sset = SLASet("etl", [
        SLA(step="load", max_duration=30, success_rate=SLO(target=0.9, window="1d")),
        SLA(max_duration=60, finish_by={"offset": "1m", "relative_to": "run_start"},
            success_rate=SLO(target=0.9, window="1d"))])
    series = [{"series": 'reliability_run_deadline_timestamp_seconds{pipeline="etl"}',
               "values": "60x80"}]
    for trigger in ("chaos-baseline", "chaos", "explore"):
        t = f'pipeline="etl",trigger="{trigger}"'
        series += [
            {"series": f"reliability_runs_in_progress{{{t}}}", "values": "1x80"},
            {"series": f'reliability_runs_total{{{t},status="failed"}}', "values": "0+1x80"},
            {"series": f'reliability_steps_total{{{t},step="load",status="failed"}}',
             "values": "0+1x80"},
            {"series": f'reliability_worker_lost_total{{{t},step="load"}}',
             "values": "_x2 1+1x78"},
            {"series": f'reliability_sla_breaches_total{{{t},step="",sla="finish_by"}}',
             "values": "_x2 1+1x78"},
            {"series": f'reliability_step_attempts_total{{{t},step="load",'
                       f'status="contract_violated"}}', "values": "_x2 1+1x78"},
            {"series": f'reliability_contract_violations_total{{{t},step="load",'
                       f'contract="c",check="not_null"}}', "values": "_x2 1+1x78"}]
    names = sorted({r.alert for r in build_rules(sset).alerts
                    if r.kind not in ("stale", "never")})
    assert len(names) == 6
    proc = promtool_test(tmp_path, sset, series, [
        {"eval_time": at, "alertname": name, "exp_alerts": []}
        for at in ("5m", "75m") for name in names])
    assert proc.returncode == 0, proc.stdout + proc.stderr
