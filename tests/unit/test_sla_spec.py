"""SLA specs: YAML and Python declaration, and bad input as ConfigError with file, path, fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from reliability.errors import ConfigError
from reliability.sla import SLA, SLO, SLASet, load_slas
from reliability.sla.spec import format_duration, parse_duration

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "x.sla.yaml"
    p.write_text(text)
    return p


def test_reference_slas_load_and_name_real_steps() -> None:
    from reliability.pipeline import load_pipeline

    slas = load_slas(ROOT / "contracts" / "reference.sla.yaml")
    assert slas.pipeline == "reference"
    assert slas.run is not None and slas.run.success_rate is not None
    assert slas.run.success_rate.target == 0.95
    assert slas.run.freshness == 26 * 3600
    assert slas.for_step("train") is not None and slas.for_step("train").max_duration == 300
    pipe = load_pipeline("pipelines.reference:pipeline")
    slas.check_steps(pipe.steps)


def test_python_declaration_accepts_duration_strings() -> None:
    sla = SLA(step="train", max_duration="1h30m", finish_by="2h",
              success_rate=SLO(target=0.99, window="7d"))
    assert sla.max_duration == 5400
    assert sla.finish_by is not None and sla.finish_by.offset == 7200
    assert sla.finish_by.relative_to == "interval_end"
    assert sla.kinds() == ["max_duration", "finish_by", "success_rate"]
    assert sla.success_rate is not None and sla.success_rate.error_budget == pytest.approx(0.01)
    sset = SLASet("p", [SLA(freshness=60), sla])
    assert sset.run is not None and sset.steps == {"train": sla}


@pytest.mark.parametrize(("text", "seconds"), [
    (30, 30.0), ("90s", 90.0), ("5m", 300.0), ("1h30m", 5400.0), ("2d", 172800.0),
    ("250ms", 0.25)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_format_duration_round_trips() -> None:
    assert format_duration(5400) == "1h30m"
    assert parse_duration(format_duration(93600)) == 93600


@pytest.mark.parametrize(("text", "key", "words"), [
    ("pipeline: p\nsteps:\n  a: {max_duration: -5}\n", "steps.a.max_duration", "> 0"),
    ("pipeline: p\nrun: {success_rate: {target: 1}}\n", "run.success_rate.target", "between"),
    ("pipeline: p\nrun: {success_rate: {target: 0}}\n", "run.success_rate.target", "between"),
    ("pipeline: p\nrun: {success_rate: {target: 1.5}}\n", "run.success_rate.target", "between"),
    ("pipeline: p\nsteps:\n  a: {max_durtion: 5}\n", "steps.a.max_durtion", "max_duration"),
    ("pipeline: p\nrun: {freshness: soon}\n", "run.freshness", "not understood"),
    ("pipeline: p\nrun: {max_duration: [1]}\n", "run.max_duration", "not a duration"),
    ("pipeline: p\nrun: {finish_by: {offset: 1h, relative_to: noon}}\n",
     "run.finish_by.relative_to", "interval_end"),
    ("pipeline: p\nsteps:\n  a: {}\n", "steps.a", "at least one"),
    ("pipeline: p\nsteps: [a]\n", "steps", "map step names"),
    ("pipelin: p\n", "pipelin", "pipeline"),
])
def test_bad_input_names_file_key_and_fix(tmp_path: Path, text: str, key: str,
                                          words: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_slas(p)
    assert err.value.file == str(p)
    assert err.value.key_path == key
    assert err.value.fix
    assert words in str(err.value)


def test_malformed_yaml(tmp_path: Path) -> None:
    p = write(tmp_path, "pipeline: p\nrun: {max_duration: 5\n")
    with pytest.raises(ConfigError, match="malformed YAML at line"):
        load_slas(p)


def test_unknown_step_is_reported_with_the_known_ones(tmp_path: Path) -> None:
    slas = load_slas(write(tmp_path, "pipeline: p\nsteps:\n  trian: {max_duration: 5}\n"))
    with pytest.raises(ConfigError, match=r"steps\.trian: step 'trian' is not a step") as err:
        slas.check_steps(["train", "ingest"])
    assert "['ingest', 'train']" in str(err.value.fix)


def test_python_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="target"):
        SLO(target=1.0)
    with pytest.raises(ValueError, match="at least one"):
        SLA(step="a")
    with pytest.raises(ValueError, match="> 0"):
        SLA(max_duration=-1)
    with pytest.raises(ConfigError, match="two SLAs"):
        SLASet("p", [SLA(step="a", max_duration=1), SLA(step="a", freshness=2)])


_SCHEDULES = """\
schedules:
  - name: nightly
    cron: "0 0 * * *"
    catchup: {grace: 1h}
  - name: berlin
    cron: "30 2 * * *"
    timezone: Europe/Berlin
    start: "2026-01-01T02:30:00+01:00"
    catchup: {grace: 0s}
    freshness: {missed_intervals: 3}
"""


def test_freshness_is_derived_from_a_schedule_beside_the_sla_file(tmp_path: Path) -> None:
    (tmp_path / "x.schedule.yaml").write_text(_SCHEDULES)
    slas = load_slas(write(tmp_path, """
pipeline: p
run: {freshness: {schedule: nightly}, max_duration: 1h}
steps:
  load: {freshness: {schedule: nightly, missed_intervals: 1}}
  fit: {freshness: {schedule: berlin}}
"""))
    assert slas.run is not None and slas.run.freshness == 2 * 86400 + 3600  # 2 days + grace
    assert slas.run.max_duration == 3600
    load, fit = slas.for_step("load"), slas.for_step("fit")
    assert load is not None and load.freshness == 86400 + 3600
    # three Berlin days, the longest stretch holding the 25-hour day of October
    assert fit is not None and fit.freshness == 3 * 86400 + 3600


@pytest.mark.parametrize(("body", "path", "message"), [
    ("{schedule: weekly}", "run.freshness.schedule", "use one of ['berlin', 'nightly']"),
    ("{schedule: nightly, every: 2}", "run.freshness", "{schedule: nightly}"),
    ("{schedule: nightly, missed_intervals: 0}", "run.freshness.missed_intervals",
     "missed_intervals: 2"),
])
def test_freshness_from_schedule_bad_input(tmp_path: Path, body: str, path: str,
                                           message: str) -> None:
    (tmp_path / "x.schedule.yaml").write_text(_SCHEDULES)
    with pytest.raises(ConfigError) as err:
        load_slas(write(tmp_path, f"pipeline: p\nrun: {{freshness: {body}}}\n"))
    text = str(err.value)
    assert "x.sla.yaml" in text and path in text and message in text, text


def test_freshness_from_schedule_without_schedule_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no schedule named 'nightly' in no file.*"
                                          r"schedule\.yaml"):
        load_slas(write(tmp_path, "pipeline: p\nrun: {freshness: {schedule: nightly}}\n"))
