"""Property: any spec file -- the repository's real ones mutated as text or as structures --
is accepted or refused with a project error (a ConfigError naming the file and the fix),
never another exception and never a hang, for every spec kind, through the calls the CLI
makes (load, check against the pipeline, what `list`/`check` then compute)."""

from __future__ import annotations

import datetime as dt
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.reference import pipeline as reference
from reliability.errors import ConfigError, ReliabilityError

ROOT = Path(__file__).resolve().parents[2]
FUZZ = settings(max_examples=60, deadline=dt.timedelta(seconds=3), derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


# -- the calls the commands make -------------------------------------------------------
def _pipeline(ref: str | None) -> Any:
    """The reference pipeline; other references are not imported (a fuzzed module name
    could name any installed module)."""
    from reliability.pipeline import load_pipeline

    if ref is None or ref == "pipelines.reference:pipeline":
        return reference
    if ref.startswith("pipelines.reference:"):
        return load_pipeline(ref)
    raise ConfigError("not imported by this test", file="-", fix="-")


def _contracts(path: Path) -> None:  # contracts check / lint
    from reliability.contracts.lint import lint_contracts
    from reliability.contracts.loader import load_contracts

    lint_contracts(load_contracts(path.parent, reference), reference)


def _chaos(path: Path) -> None:  # chaos validate
    from reliability.chaos.experiment import check_experiment, load_experiment

    spec, file = load_experiment(path)
    check_experiment(spec, _pipeline(spec.pipeline), file=file, env="local")


def _sla(path: Path) -> None:  # sla check
    from reliability.sla.spec import format_duration, load_slas

    sset = load_slas(path)
    sset.check_steps(reference.steps)
    for sla in sset:
        for value in (sla.max_duration, sla.freshness,
                      sla.finish_by.offset if sla.finish_by else None,
                      sla.success_rate.window if sla.success_rate else None):
            if value is not None:
                format_duration(value)


def _schedule(path: Path) -> None:  # schedule list
    from reliability.schedule import load_schedules

    now = dt.datetime(2026, 11, 29, 12, tzinfo=dt.UTC)
    for s in load_schedules(path, resolve=_pipeline):
        s.freshness_threshold()
        f = s.timetable.next_fire(now)
        if f is not None:
            s.timetable.interval_ending_at(f)
        s.timetable.latest_complete(now)


def _project(path: Path) -> None:  # every command: find the project, its pipeline
    from reliability.project import find_project

    project = find_project(path.parent)
    _ = project.home, project.contracts_dir, project.sla_file
    _pipeline(project.pipeline_ref)


#: kind -> (seed file in the repository, name to write it as, the command's calls)
KINDS: dict[str, tuple[Path, str, Callable[[Path], None]]] = {
    "contracts": (ROOT / "contracts/reference/validate.output.yaml", "validate.output.yaml",
                  _contracts),
    "chaos": (ROOT / "chaos/kill-train.yaml", "exp.yaml", _chaos),
    "sla": (ROOT / "contracts/reference.sla.yaml", "reference.sla.yaml", _sla),
    "schedule": (ROOT / "contracts/reference.schedule.yaml", "reference.schedule.yaml",
                 _schedule),
    "project": (ROOT / "reliability.yaml", "reliability.yaml", _project),
}


def _check(kind: str, folder: Path, text: str) -> None:
    _, name, calls = KINDS[kind]
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    f = folder / name
    f.write_text(text, encoding="utf-8")
    if kind == "sla":  # freshness: {schedule: NAME} looks beside the SLA file
        shutil.copy(KINDS["schedule"][0], folder / "reference.schedule.yaml")
    refused: ConfigError | None = None
    try:
        calls(f)
    except ConfigError as err:
        refused = err
    except ReliabilityError:
        return
    if refused is not None and refused.file != "-":
        assert refused.file, f"no file named: {refused}"
        assert refused.fix, f"no fix given: {refused}"
        assert len(str(refused)) < 2000


# -- fuzzed text -------------------------------------------------------------------------
YAML_BITS = [":", "-", "[", "]", "{", "}", "&a", "*a", "!!", "|", ">", "'", '"', "#", "%",
             "@", "`", ",", "?", " ", "\n", "\t", "  ", "\n  ", ".nan", ".inf", "-.inf", "1e300",
             "-1", "0", "~", "null", "true", "<<: ", "!!binary", "!!python/object", "2026-13-45",
             "9" * 30, "0x1F", "\u00e9", "\x00", "\ufeff", "*/0", "%Q"]


@st.composite
def mutated_text(draw: st.DrawFn, seed: str) -> str:
    text = seed
    for _ in range(draw(st.integers(1, 5))):
        op = draw(st.sampled_from(["insert", "delete", "replace", "duplicate", "truncate"]))
        at = draw(st.integers(0, len(text)))
        if op == "insert":
            bit = draw(st.sampled_from(YAML_BITS) | st.text(max_size=6))
            text = text[:at] + bit + text[at:]
        elif op == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 20)):]
        elif op == "replace":
            text = text[:at] + draw(st.sampled_from(YAML_BITS)) + text[at + 1:]
        elif op == "duplicate":
            lines = text.splitlines(keepends=True) or [""]
            i = draw(st.integers(0, len(lines) - 1))
            text = "".join([*lines[:i + 1], lines[i], *lines[i + 1:]])
        else:
            text = text[:at]
    return text


# -- fuzzed structures -------------------------------------------------------------------
NASTY = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-(2**80), 2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e300, -1, 0, 10**30, 2**63, "", "NaN",
                     "1e300", "-5s", "99999999999999w", "0s", "[/bold]", "*/0 * * * *",
                     "60 * * * *", "%Q", "Mars/Olympus", "0001-01-01T00:00:00+00:00",
                     "9999-12-31T23:59:59+00:00", "http://evil.example.com/", "{listen.x}",
                     "x" * 5000, [], {}, [[[[]]]], {"a": {"b": {"c": None}}}]),
    st.text(max_size=12), st.lists(st.integers() | st.text(max_size=4), max_size=3),
    st.dictionaries(st.text(max_size=6), st.integers() | st.none(), max_size=2),
)


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(data, dict):
        for k, v in data.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _paths(v, (*prefix, i))
    return out


def _get(data: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        data = data[p]
    return data


@st.composite
def mutated_structure(draw: st.DrawFn, seed: Any) -> Any:
    import copy

    def nasty() -> Any:  # a copy: the sampled lists and dicts are shared between examples
        return copy.deepcopy(draw(NASTY))

    data = copy.deepcopy(seed)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(data)
        path = draw(st.sampled_from(paths))
        if not path:
            if draw(st.booleans()):
                return nasty()
            continue
        parent = _get(data, path[:-1])
        op = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if op == "replace":
            parent[path[-1]] = nasty()
        elif op == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from([*map(str, parent), "bogus", "pipeline", "run"]))
                   + draw(st.sampled_from(["", "_x"]))] = nasty()
        else:
            parent.append(nasty())
    return data


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def _seed(kind: str) -> str:
    return KINDS[kind][0].read_text(encoding="utf-8")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_seed_files_are_accepted(tmp_path: Path, kind: str) -> None:
    _, name, calls = KINDS[kind]
    shutil.copy(KINDS[kind][0], tmp_path / name)
    if kind == "sla":
        shutil.copy(KINDS["schedule"][0], tmp_path / "reference.schedule.yaml")
    calls(tmp_path / name)


def _fuzz_text(kind: str) -> Callable[..., None]:
    @FUZZ
    @given(text=mutated_text(_seed(kind)))
    def run(tmp_path: Path, text: str) -> None:
        _check(kind, tmp_path / "f", text)

    return run


def _fuzz_structure(kind: str) -> Callable[..., None]:
    @FUZZ
    @given(data=mutated_structure(yaml.safe_load(_seed(kind))))
    def run(tmp_path: Path, data: Any) -> None:
        _check(kind, tmp_path / "f", _dump(data))

    return run


test_contracts_text = _fuzz_text("contracts")
test_contracts_structure = _fuzz_structure("contracts")
test_chaos_text = _fuzz_text("chaos")
test_chaos_structure = _fuzz_structure("chaos")
test_sla_text = _fuzz_text("sla")
test_sla_structure = _fuzz_structure("sla")
test_schedule_text = _fuzz_text("schedule")
test_schedule_structure = _fuzz_structure("schedule")
test_project_text = _fuzz_text("project")
test_project_structure = _fuzz_structure("project")


# -- hand-edited chaos journals (`chaos report`) -------------------------------------------
JOURNAL: dict[str, Any] = {
    "format": "reliability.chaos.journal/1", "status": "passed", "score": 100.0, "seed": 7,
    "pipeline": "reference", "environment": "local", "aborted": None, "error": None,
    "experiment": {"title": "t", "description": "", "file": None},
    "attempts": [{"step": "train", "attempt": 1, "status": "worker_lost", "start": 0.1,
                  "end": 0.5, "error": "killed", "error_type": "WorkerLost"},
                 {"step": "train", "attempt": 2, "status": "succeeded", "start": 0.6,
                  "end": 1.2, "error": None, "error_type": None}],
    "faults": [{"fault": "kill", "type": "kill_worker", "step": "train", "attempt": 1,
                "source": "controller", "t": 0.3, "target": None}],
    "steady_state": {"before": [{"probe": "run_succeeds", "ok": True, "detail": "ok"}],
                     "after": [{"probe": "run_succeeds", "ok": True, "detail": "ok"}]},
    "rollbacks": [{"action": "delete proxy", "ok": True, "proxy": "wine", "reason": "teardown",
                   "toxic": None}],
    "baseline": {"run_id": "b", "status": "succeeded", "duration": 1.0,
                 "outputs": {"train": "ab"}, "failed": {}, "skipped": []},
    "run": {"run_id": "r", "status": "succeeded", "duration": 1.2,
            "outputs": {"train": "ab"}, "failed": {}, "skipped": []},
}


@FUZZ
@given(data=mutated_structure(JOURNAL))
def test_chaos_report_of_an_edited_journal(tmp_path: Path, data: Any) -> None:
    import json

    from reliability.chaos.journal import Journal
    from reliability.chaos.report import render_report

    f = tmp_path / "j.json"
    f.write_text(json.dumps(data, default=str))
    try:
        journal = Journal.load(f)
    except ConfigError as err:
        assert err.file == str(f)  # noqa: PT017 -- the refusal itself is what is checked
        return
    render_report(journal)
    journal.normalized()
