"""Impossible values are refused when a spec is loaded, with the key path; hand-edited
journals and markup in user text never crash a command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reliability.chaos.experiment import check_experiment, load_experiment
from reliability.chaos.journal import FORMAT, Journal
from reliability.chaos.report import render_report
from reliability.cli.main import main
from reliability.contracts.loader import load_specs
from reliability.errors import BlastRadiusError, ConfigError
from reliability.schedule import load_schedules
from reliability.schedule.spec import parse_duration
from reliability.sla.spec import load_slas

CONTRACT = ("pipeline: chain\nstep: source\ndirection: output\nkind: {kind}\n{body}")


def _contract(tmp_path: Path, kind: str, body: str) -> ConfigError:
    d = tmp_path / "contracts"
    d.mkdir(exist_ok=True)
    (d / "c.yaml").write_text(CONTRACT.format(kind=kind, body=body))
    with pytest.raises(ConfigError) as info:
        load_specs(d)
    assert info.value.file == str(d / "c.yaml")
    return info.value


@pytest.mark.parametrize(("kind", "body", "path"), [
    ("dataframe", "schema:\n  columns:\n    x: {dtype: float64, in_range: {min_value: .nan}}\n",
     "schema.columns.x.in_range.min_value"),
    ("dataframe", "schema:\n  columns:\n    x: {dtype: float64, in_range: {max_value: .inf}}\n",
     "schema.columns.x.in_range.max_value"),
    ("dataframe", "schema:\n  columns:\n    x: {dtype: float64, ge: .nan}\n",
     "schema.columns.x.ge"),
    ("dataframe", "schema:\n  columns:\n    x: {dtype: int64, isin: []}\n",
     "schema.columns.x.isin"),
    ("dataframe", "schema:\n  min_rows: 5\n  max_rows: 2\n", "schema"),
    ("metrics", "gates:\n  - {metric: acc, min: 'NaN'}\n", "gates[0].min"),
    ("metrics", "gates:\n  - {metric: acc, min: 0.9, max: 0.5}\n", "gates[0]"),
    ("metrics", "metrics:\n  fields:\n    acc: {max: .inf}\n", "metrics.fields.acc.max"),
    ("file", "file: {max_bytes: -1}\n", "file.max_bytes"),
    ("file", "file: {min_bytes: 10, max_bytes: 5}\n", "file"),
])
def test_impossible_contract_values(tmp_path: Path, kind: str, body: str, path: str) -> None:
    assert _contract(tmp_path, kind, body).key_path == path


def _experiment(**change: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"title": "t", "method": [{"type": "kill_worker", "step": "source"}]}
    return {**base, **change}


@pytest.mark.parametrize(("change", "path"), [
    ({"method": [{"type": "latency", "step": "source", "seconds": 1e60}]}, "method[0].seconds"),
    ({"method": [{"type": "latency", "step": "source", "seconds": -1}]}, "method[0].seconds"),
    ({"method": [{"type": "hang", "step": "source", "seconds": float("inf")}]},
     "method[0].seconds"),
    ({"method": [{"type": "kill_worker", "step": "source", "after": float("nan")}]},
     "method[0].after"),
    ({"method": [{"type": "kill_worker", "step": "source", "probability": 1.5}]},
     "method[0].probability"),
    ({"method": [{"type": "network", "proxy": "p", "toxic": "latency",
                  "attributes": {"latency": 10**400}}]}, "method[0]"),
    ({"method": [{"type": "network", "proxy": "p", "toxic": "latency", "toxicity": -0.5}]},
     "method[0].toxicity"),
    ({"steady-state-hypothesis": {"max_duration": float("inf")}},
     "steady-state-hypothesis.max_duration"),
    ({"abort": {"max_duration": float("inf")}}, "abort.max_duration"),
    ({"target": {"services": [{"name": "s", "upstream": "127.0.0.1:1",
                               "url": "http://{listen.__class__}/"}]}},
     "target.services[0].url"),
])
def test_impossible_chaos_values(change: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_experiment(_experiment(**change))
    assert info.value.key_path == path


@pytest.mark.parametrize("url", ["http://evil.example.com/wine.csv",
                                 "http://evil.example.com/{listen}"])
def test_a_service_url_outside_the_allowed_hosts_is_refused(url: str) -> None:
    spec, _ = load_experiment(_experiment(target={"services": [
        {"name": "s", "upstream": "127.0.0.1:1", "url": url}]}))
    with pytest.raises(BlastRadiusError, match=r"target.services\[0\].url"):
        check_experiment(spec, None, env="local")
    spec, _ = load_experiment(_experiment(target={"services": [
        {"name": "s", "upstream": "127.0.0.1:1", "url": "http://{listen}/wine.csv"}]}))
    check_experiment(spec, None, env="local")


@pytest.mark.parametrize(("body", "path"), [
    ("run: {max_duration: .inf}\n", "run.max_duration"),
    ("run: {max_duration: -5}\n", "run.max_duration"),
    ("run: {max_duration: 1.0e+300}\n", "run.max_duration"),
    ("run: {success_rate: {target: .nan}}\n", "run.success_rate.target"),
    ("steps: {source: {freshness: .nan}}\n", "steps.source.freshness"),
])
def test_impossible_sla_values(tmp_path: Path, body: str, path: str) -> None:
    f = tmp_path / "chain.sla.yaml"
    f.write_text("pipeline: chain\n" + body)
    with pytest.raises(ConfigError) as info:
        load_slas(f)
    assert (info.value.file, info.value.key_path) == (str(f), path)


@pytest.mark.parametrize(("body", "path"), [
    ("  cron: '0 * * * *'\n  catchup: {grace: 1.0e+300}\n", "schedules[0].catchup.grace"),
    ("  cron: '0 * * * *'\n  catchup: {grace: -5}\n", "schedules[0].catchup.grace"),
    ("  cron: '0 * * * *'\n  catchup: {grace: .nan}\n", "schedules[0].catchup.grace"),
    ("  cron: '0 * * * *'\n  watch: {path: x, poll: 1.0e+300}\n", "schedules[0].watch.poll"),
    ("  every: 1.0e+300\n  start: '2026-01-01T00:00:00+00:00'\n", "schedules[0].every"),
    ("  every: .inf\n  start: '2026-01-01T00:00:00+00:00'\n", "schedules[0].every"),
    ("  every: 99999999999999999999w\n  start: '2026-01-01T00:00:00+00:00'\n",
     "schedules[0].every"),
])
def test_impossible_schedule_durations(tmp_path: Path, body: str, path: str) -> None:
    from sample_pipelines import chain

    f = tmp_path / "a.schedule.yaml"
    f.write_text("schedules:\n- name: a\n" + body)
    with pytest.raises(ConfigError) as info:
        load_schedules(f, resolve=lambda ref: chain)
    assert (info.value.file, info.value.key_path) == (str(f), path)


def test_parse_duration_raises_value_errors_only() -> None:
    for value in (1e300, float("inf"), float("nan"), -1, "1e300", "9" * 400 + "w"):
        with pytest.raises(ValueError):
            parse_duration(value)
    assert parse_duration("6h").total_seconds() == 21600


def _journal(tmp_path: Path, **change: Any) -> Path:
    data: dict[str, Any] = {
        "format": FORMAT, "status": "passed", "score": 100.0, "seed": 1,
        "experiment": {"title": "t", "description": ""},
        "attempts": [{"step": "a", "attempt": 1, "status": "succeeded", "start": 0.0,
                      "end": 1.0}],
        "faults": [], "steady_state": {"before": [], "after": []}, "rollbacks": []}
    f = tmp_path / "j.json"
    f.write_text(json.dumps({**data, **change}))
    return f


@pytest.mark.parametrize(("attempt", "path"), [
    ({"step": "a", "attempt": 1, "start": 0.0, "end": 1.0}, "attempts[0].status"),
    ({"step": "a", "attempt": 1, "status": "failed", "start": "x", "end": 1.0},
     "attempts[0].start"),
])
def test_hand_edited_journals_are_config_errors(tmp_path: Path, attempt: dict[str, Any],
                                                path: str, capsys: pytest.CaptureFixture[str]
                                                ) -> None:
    f = _journal(tmp_path, attempts=[attempt])
    with pytest.raises(ConfigError) as info:
        Journal.load(f)
    assert (info.value.file, info.value.key_path) == (str(f), path)
    assert main(["chaos", "report", str(f), "-o", str(tmp_path / "r.html")]) == 2
    assert path in capsys.readouterr().err


def test_the_report_renders_a_journal_it_can_read(tmp_path: Path) -> None:
    html = render_report(Journal.load(_journal(tmp_path, score=42)))
    assert "42" in html


def test_the_timeline_tolerates_odd_records() -> None:
    from reliability._timeline import layout

    out = layout([{"step": "a", "start": "x", "end": float("nan")}, {"step": "b"}, "junk"],
                 [{"t": "later", "step": None}])
    assert [r["step"] for r in out["rows"]] == ["a", "b"]


def test_markup_in_user_text_prints_as_text(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--pipeline", "sample_pipelines:markup", "--home",
                 str(tmp_path / "home"), "--no-contracts", "--no-sla"])
    assert code == 1
    captured = capsys.readouterr()
    text = " ".join((captured.out + captured.err).split())
    assert "closing [/bold] and [link=https://example.com]a link[/link] [red]red" in text


def test_markup_in_a_table_of_file_names_prints_as_text(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "[red]dir[link=x]"
    d.mkdir()
    g = d / "chain.sla.yaml"
    g.write_text("pipeline: chain\nsteps: {source: {max_duration: 5}}\n")
    monkeypatch.chdir(tmp_path)
    assert main(["sla", "check", "--sla", str(g)]) == 0
    assert "[red]dir[link=x]" in "".join(capsys.readouterr().out.split())


def test_a_refusal_cuts_a_huge_value() -> None:
    spec, _ = load_experiment(_experiment(target={"services": [
        {"name": "s", "upstream": "h" * 200_000 + ":1"}]}))
    with pytest.raises(BlastRadiusError) as info:
        check_experiment(spec, None, env="local")
    assert len(str(info.value)) < 1000
    assert "characters cut" in str(info.value)
