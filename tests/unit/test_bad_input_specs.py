"""Spec errors: union members and aliases in key paths, empty ranges, schedules, SLAs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from reliability.chaos.experiment import load_experiment
from reliability.contracts.spec import InRange
from reliability.errors import ConfigError, DefinitionError
from reliability.pipeline import Pipeline
from reliability.project import Project, ProjectSpec
from reliability.schedule import load_schedules
from reliability.schedule.intervals import IntervalTimetable
from reliability.sla.spec import SLASet


def test_union_members_do_not_leak_into_key_paths() -> None:
    with pytest.raises(ConfigError) as info:
        load_experiment({"title": "t", "method": [{"type": "kill_worker", "step": "a",
                                                   "attempts": 0}]})
    assert info.value.key_path == "method[0].attempts"
    assert "valid list or Input should be 'all'" in str(info.value)


def test_aliased_sections_list_their_keys() -> None:
    with pytest.raises(ConfigError) as info:
        load_experiment({"title": "t", "steady-state-hypothesis": {"bogus": 1},
                         "method": [{"type": "kill_worker", "step": "a"}]})
    assert info.value.key_path == "steady-state-hypothesis.bogus"
    assert "run_succeeds" in (info.value.fix or "")


@pytest.mark.parametrize("rng", [
    {"min_value": 16, "max_value": 10},
    {"min_value": 1, "max_value": 1, "include_max": False},
])
def test_a_range_no_value_can_satisfy_is_an_error(rng: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="admit no value"):
        InRange.model_validate(rng)
    InRange.model_validate({"min_value": 1, "max_value": 1})


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "x.schedule.yaml"
    p.write_text(text)
    return p


def _resolve(ref: str | None) -> Pipeline:
    from sample_pipelines import chain

    return chain


def test_schedule_end_before_start(tmp_path: Path) -> None:
    f = _write(tmp_path, "schedules:\n- name: a\n  cron: '0 0 * * *'\n"
               "  start: '2026-02-01T00:00:00+00:00'\n  end: '2026-01-01T00:00:00+00:00'\n")
    with pytest.raises(ConfigError, match=r"'end' .* must be after 'start'") as info:
        load_schedules(f, resolve=_resolve)
    assert info.value.file == str(f)


def test_schedule_unknown_params_and_empty_file(tmp_path: Path) -> None:
    f = _write(tmp_path, "schedules:\n- name: a\n  cron: '0 0 * * *'\n  params: {rowz: 1}\n")
    with pytest.raises(ConfigError, match="no parameter 'rowz'") as info:
        load_schedules(f, resolve=_resolve)
    assert info.value.key_path == "schedules[0].params"
    with pytest.raises(ConfigError, match="file is empty"):
        load_schedules(_write(tmp_path, ""), resolve=_resolve)


def test_a_one_off_schedule_has_no_freshness_threshold(tmp_path: Path) -> None:
    f = _write(tmp_path, "schedules:\n- name: once\n  at: '2026-03-01T00:00:00+00:00'\n"
               "  start: '2026-02-01T00:00:00+00:00'\n")
    (once,) = load_schedules(f, resolve=_resolve)
    assert once.freshness_threshold() is None


def test_interval_limit() -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    tt = IntervalTimetable(dt.timedelta(seconds=1), start)
    with pytest.raises(DefinitionError, match="more than 10 data intervals"):
        tt.intervals(start, start + dt.timedelta(hours=1), limit=10)
    assert len(tt.intervals(start, start + dt.timedelta(seconds=10), limit=10)) == 10


def test_sla_steps_are_checked_against_the_project_pipeline() -> None:
    from reliability.cli.sla import _check_against_project

    sset = SLASet.from_mapping({"pipeline": "chain", "steps": {"nosuch": {"max_duration": 5}}},
                               source="x.sla.yaml")
    project = Project(Path.cwd(), ProjectSpec(pipeline="sample_pipelines:chain"))
    with pytest.raises(ConfigError, match="step 'nosuch' is not a step"):
        _check_against_project(sset, project, explicit=True)
    other = SLASet.from_mapping({"pipeline": "other", "steps": {}}, source="x.sla.yaml")
    _check_against_project(other, project, explicit=True)  # another pipeline's file: allowed
    with pytest.raises(ConfigError, match="never be checked") as info:
        _check_against_project(other, project, explicit=False)
    assert info.value.key_path == "pipeline"
