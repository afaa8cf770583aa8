"""Schedules in YAML: the reference file loads; mistakes name file, key path and fix."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from reliability.errors import ConfigError
from reliability.pipeline import Pipeline
from reliability.schedule import CatchupPolicy, CronTimetable, load_schedules
from reliability.schedule.spec import parse_duration

ROOT = Path(__file__).resolve().parents[2]


def fake_resolve(ref: str | None) -> Pipeline:
    return Pipeline("reference")


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "x.schedule.yaml"
    p.write_text(text)
    return p


def test_reference_schedule_file_loads() -> None:
    scheds = load_schedules(ROOT / "contracts" / "reference.schedule.yaml",
                            resolve=fake_resolve)
    daily, on_arrival = scheds
    assert daily.pipeline == "reference" and isinstance(daily.timetable, CronTimetable)
    assert daily.catchup.policy is CatchupPolicy.LATEST
    assert daily.catchup.grace == dt.timedelta(hours=6)
    assert daily.freshness_threshold() == 49 * 3600 + 6 * 3600
    assert not on_arrival.fire_on_time and on_arrival.watch is not None
    assert on_arrival.watch.partition == "dt=%Y-%m-%d" and on_arrival.watch.poll == 5.0


@pytest.mark.parametrize(("body", "path", "fix"), [
    ("schedules:\n  - name: a\n    cron: '0 * * * *'\n    catchup: {polcy: all}\n",
     "schedules[0].catchup.polcy", "did you mean 'policy'"),
    ("schedules:\n  - name: a\n    cron: '0 * * * *'\n    every: 1h\n", "schedules[0]",
     "exactly one of cron, every, at"),
    ("schedules:\n  - name: a\n    cron: '0 * * * *'\n    timezone: Mars/Base\n",
     "schedules[0].timezone", "IANA"),
    ("schedules:\n  - name: a\n    cron: '0 99 * * *'\n", "schedules[0].cron", "five fields"),
    ("schedules:\n  - name: a\n    cron: '0 * * * *'\n    catchup: {grace: soon}\n",
     "schedules[0].catchup.grace", "duration"),
    ("schedules:\n  - {name: a, cron: '0 * * * *'}\n  - {name: a, cron: '0 1 * * *'}\n",
     "schedules[1].name", "its own name"),
])
def test_errors_name_file_key_path_and_fix(tmp_path: Path, body: str, path: str,
                                           fix: str) -> None:
    f = write(tmp_path, body)
    with pytest.raises(ConfigError) as err:
        load_schedules(f, resolve=fake_resolve)
    assert err.value.file == str(f)
    assert err.value.key_path == path
    assert fix in str(err.value)


@pytest.mark.parametrize(("text", "seconds"), [(90, 90), ("90s", 90), ("15m", 900),
                                               ("6h", 21600), ("1d", 86400), ("1w", 604800)])
def test_durations(text: Any, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds
