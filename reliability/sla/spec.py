"""SLA specs: per-step and per-pipeline limits, declared in YAML or in Python.

An :class:`SLA` targets one step (``step="train"``) or the whole pipeline (``step=None``)::

    SLASet("reference", [
        SLA(max_duration="10m", finish_by="2h", freshness="26h",
            success_rate=SLO(target=0.99, window="28d")),
        SLA(step="train", max_duration=300),
    ])

* ``max_duration`` -- a step (across its attempts) or a run may not run longer than this;
  checked live, so the breach is reported the moment the budget is spent.
* ``finish_by`` -- a deadline relative to the data interval's end (default), its start, or
  the run's start; checked live as well.
* ``freshness`` -- the longest acceptable time since the last success.
* ``success_rate`` -- an SLO: ``target`` ratio of successful runs (or final step outcomes)
  over ``window``; the error budget is ``1 - target``.

The YAML form (``load_slas``) mirrors it, durations as seconds or ``"90s"``, ``"5m"``,
``"1h30m"``, ``"2d"``::

    pipeline: reference
    run:
      max_duration: 10m
      finish_by: {offset: 2h, relative_to: interval_end}
      freshness: 26h
      success_rate: {target: 0.99, window: 28d}
    steps:
      train: {max_duration: 5m}
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import BeforeValidator, Field, field_validator, model_validator

from reliability._spec import Spec, cut, load_model, parse_model
from reliability.errors import ConfigError

__all__ = [
    "SLA",
    "SLO",
    "Deadline",
    "SLAKind",
    "SLASet",
    "format_duration",
    "load_slas",
    "parse_duration",
]

SLAKind = Literal["max_duration", "finish_by", "freshness", "success_rate"]
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
#: The longest duration an SLA accepts (ten years), in seconds.
MAX_DURATION = 3660 * 86400.0


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string such as ``"90s"``, ``"1h30m"``, ``"2d"``."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration; write seconds or e.g. '5m'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        parts = _PART.findall(text)
        if not text or "".join(n + u for n, u in parts) != text:
            raise ValueError(f"duration {cut(value, 60)} is not understood; write seconds or a "
                             "string like '90s', '5m', '1h30m', '2d'")
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    else:
        raise ValueError(f"{value!r} is not a duration; write seconds or e.g. '5m'")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"duration {cut(value, 60)} must be a finite number of seconds > 0; "
                         "give a positive duration such as 30 or '5m'")
    if seconds > MAX_DURATION:
        raise ValueError(f"duration {cut(value, 60)} is longer than ten years; give at most "
                         "e.g. '520w'")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest Prometheus duration string for whole seconds (``"1h30m"``)."""
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    rest = round(seconds)
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out += f"{rest // size}{unit}"
            rest %= size
    return out


Duration = Annotated[float, BeforeValidator(parse_duration)]


class Deadline(Spec):
    """Finish by ``offset`` after the interval's end (or start), or after the run started."""

    offset: Duration
    relative_to: Literal["interval_end", "interval_start", "run_start"] = "interval_end"

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"offset": data} if isinstance(data, int | float | str) else data


class SLO(Spec):
    """A success-rate objective: ``target`` in (0, 1) over a rolling ``window``."""

    target: float
    window: Duration = 28 * 86400.0

    @field_validator("target")
    @classmethod
    def _target(cls, v: float) -> float:
        if not 0.0 < v < 1.0:
            raise ValueError(f"target={v} must be strictly between 0 and 1 (e.g. 0.99 for "
                             "99%); 1 leaves no error budget, 0 promises nothing")
        return v

    @property
    def error_budget(self) -> float:
        return 1.0 - self.target

    def budget_left(self, ok: int, failed: int) -> tuple[float, float]:
        """``(error ratio, share of the error budget left)`` for ``ok`` and ``failed``
        outcomes in the window; the share goes below 0 once the budget is spent."""
        ratio = failed / (ok + failed) if ok + failed else 0.0
        return ratio, 1.0 - ratio / self.error_budget


def _mapping_of_limits(data: Any) -> Any:
    """A plain ValueError (not pydantic's "instance of _Body") for a non-mapping SLA."""
    if isinstance(data, Mapping | Spec):
        return data
    raise ValueError(f"{data!r} is not a mapping of limits; write e.g. "
                     "{max_duration: 5m, freshness: 26h}")


class _Body(Spec):
    """The limits themselves, as written under a step or ``run`` in an SLA file."""

    max_duration: Duration | None = None
    finish_by: Deadline | None = None
    freshness: Duration | None = None
    success_rate: SLO | None = None
    severity: Literal["page", "ticket"] = "page"

    @model_validator(mode="before")
    @classmethod
    def _mapping(cls, data: Any) -> Any:
        return _mapping_of_limits(data)

    @model_validator(mode="after")
    def _at_least_one_limit(self) -> Self:
        _require_one(self)
        return self


class SLA(_Body):
    """Limits for one step, or for the whole pipeline when ``step`` is None."""

    step: str | None = None

    @model_validator(mode="after")
    def _step_name(self) -> SLA:
        if self.step is not None and not _NAME.match(self.step):
            raise ValueError(f"step={self.step!r} is not a step name (letters, digits, '_', '-')")
        return self

    @property
    def scope(self) -> str:
        return self.step or "run"

    def kinds(self) -> list[SLAKind]:
        names: tuple[SLAKind, ...] = ("max_duration", "finish_by", "freshness",
                                      "success_rate")
        return [k for k in names if getattr(self, k) is not None]


def _require_one(spec: Any) -> None:
    if not any((spec.max_duration, spec.finish_by, spec.freshness, spec.success_rate)):
        raise ValueError("an SLA needs at least one of max_duration, finish_by, freshness, "
                         "success_rate")


class _SLAFile(Spec):
    version: Literal[1] = 1
    pipeline: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    runbook_base_url: str | None = None
    run: _Body | None = None
    steps: dict[str, Any] = Field(default_factory=dict)  # each a _Body, parsed with its path

    @model_validator(mode="before")
    @classmethod
    def _mapping(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            raise ValueError(f"an SLA file is a mapping (pipeline:, run:, steps:), not "
                             f"{type(data).__name__} {data!r}; start it with "
                             "`pipeline: <name>`")
        return data

    @field_validator("steps", mode="before")
    @classmethod
    def _steps(cls, v: Any) -> Any:
        if not isinstance(v, Mapping):
            raise ValueError(f"steps must map step names to their limits, not {v!r}; write "
                             "e.g. `steps: {train: {max_duration: 5m}}`")
        return v


class SLASet:
    """The SLAs of one pipeline (at most one per scope: the run, or a step)."""

    def __init__(self, pipeline: str, slas: Iterable[SLA] = (), *,
                 runbook_base_url: str | None = None, source: str | None = None) -> None:
        self.pipeline = pipeline
        self.runbook_base_url = runbook_base_url
        self.source = source
        self._by_scope: dict[str | None, SLA] = {}
        for sla in slas:
            if sla.step in self._by_scope:
                raise ConfigError(
                    f"two SLAs for {sla.scope!r} of pipeline {pipeline!r}", file=source,
                    path=("steps", sla.step) if sla.step else ("run",),
                    fix="merge them into one SLA")
            self._by_scope[sla.step] = sla

    def __iter__(self) -> Iterator[SLA]:
        return iter(self._by_scope.values())

    def __len__(self) -> int:
        return len(self._by_scope)

    def __repr__(self) -> str:
        return f"SLASet({self.pipeline!r}, scopes={[s.scope for s in self]})"

    @property
    def run(self) -> SLA | None:
        return self._by_scope.get(None)

    def for_step(self, step: str) -> SLA | None:
        return self._by_scope.get(step)

    @property
    def steps(self) -> dict[str, SLA]:
        return {k: v for k, v in self._by_scope.items() if k is not None}

    def check_steps(self, steps: Iterable[str]) -> None:
        """Raise ConfigError if an SLA names a step the pipeline does not have."""
        known = sorted(steps)
        for name in self.steps:
            if name not in known:
                raise ConfigError(
                    f"step {name!r} is not a step of pipeline {self.pipeline!r}",
                    file=self.source, path=("steps", name),
                    fix=f"use one of {known}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str | None = None) -> SLASet:
        """Build from the YAML structure (already parsed); errors name ``source``.

        A ``freshness: {schedule: NAME}`` is derived from the schedule ``NAME`` declared in a
        ``*.schedule.yaml`` beside ``source`` (see :func:`freshness_from_schedule`).
        """
        data = _derive_freshness(data, source)
        return cls._from_file(parse_model(data, _SLAFile, file=source), source)

    @classmethod
    def _from_file(cls, spec: _SLAFile, source: str | None) -> SLASet:
        slas = []
        if spec.run is not None:
            slas.append(SLA.model_construct(step=None, **dict(spec.run)))
        for name, body in spec.steps.items():
            if not _NAME.match(name):
                raise ConfigError(f"{name!r} is not a step name", file=source,
                                  path=("steps", name),
                                  fix="use the step's name: letters, digits, '_' or '-'")
            parsed = parse_model(body, _Body, file=source, path=("steps", name))
            slas.append(SLA.model_construct(step=name, **dict(parsed)))
        return cls(spec.pipeline, slas, runbook_base_url=spec.runbook_base_url, source=source)


def load_slas(path: str | Path) -> SLASet:
    """Load an SLA YAML file; any problem is a ConfigError naming file, key path and fix."""
    from reliability._spec import load_yaml

    data = load_yaml(path)
    if data is None:
        return SLASet._from_file(load_model(path, _SLAFile), str(path))  # its own error
    return SLASet.from_mapping(data, source=str(path))


def _derive_freshness(data: Any, source: str | None) -> Any:
    """Replace each ``freshness: {schedule: NAME[, missed_intervals: N]}`` by seconds."""
    if not isinstance(data, Mapping):
        return data
    out = dict(data)
    if "run" in out:
        out["run"] = _with_freshness(out["run"], ("run",), source)
    if isinstance(out.get("steps"), Mapping):
        out["steps"] = {k: _with_freshness(v, ("steps", str(k)), source)
                        for k, v in out["steps"].items()}
    return out


def _with_freshness(body: Any, where: tuple[str, ...], source: str | None) -> Any:
    """``body`` with a schedule-derived freshness resolved (other bodies as they are)."""
    if not isinstance(body, Mapping) or not isinstance(body.get("freshness"), Mapping):
        return body
    ref = body["freshness"]
    path = (*where, "freshness")
    unknown = sorted(set(ref) - {"schedule", "missed_intervals"})
    if unknown or not isinstance(ref.get("schedule"), str):
        raise ConfigError(
            f"freshness is a duration or {{schedule: NAME}}, not {dict(ref)!r}",
            file=source, path=path,
            fix="write e.g. `freshness: 26h`, or `freshness: {schedule: nightly}` "
                "(optionally with missed_intervals: N)")
    missed = ref.get("missed_intervals")
    if missed is not None and (isinstance(missed, bool) or not isinstance(missed, int)
                               or missed < 1):
        raise ConfigError(f"missed_intervals={missed!r} is not a whole number >= 1",
                          file=source, path=(*path, "missed_intervals"),
                          fix="e.g. missed_intervals: 2")
    seconds = freshness_from_schedule(ref["schedule"], source, missed=missed,
                                      path=(*path, "schedule"))
    return {**body, "freshness": seconds}


def freshness_from_schedule(name: str, sla_file: str | Path | None, *,
                            missed: int | None = None,
                            path: tuple[str, ...] = ("run", "freshness", "schedule")) -> float:
    """Seconds after which data of schedule ``name`` is stale.

    The schedule is looked up in the ``*.schedule.yaml`` files beside ``sla_file``; stale
    means ``missed`` (default: the schedule's ``freshness.missed_intervals``) intervals went
    by without a success, the longest such stretch of the schedule's calendar (DST days and
    month ends included), plus its catch-up grace.
    """
    from reliability._spec import load_yaml
    from reliability.errors import DefinitionError
    from reliability.schedule.intervals import freshness_threshold
    from reliability.schedule.spec import ScheduleFile

    if sla_file is None:
        raise ConfigError("freshness from a schedule needs the SLA's file to find the "
                          "schedule", path=path,
                          fix="load the SLAs from a file beside its *.schedule.yaml")
    folder = Path(sla_file).parent
    files = sorted([*folder.glob("*.schedule.yaml"), *folder.glob("*.schedule.yml")])
    known: list[str] = []
    for f in files:
        spec = parse_model(load_yaml(f) or {}, ScheduleFile, file=str(f))
        for sched in spec.schedules:
            known.append(sched.name)
            if sched.name != name:
                continue
            try:
                return freshness_threshold(sched.timetable(),
                                           missed or sched.freshness.missed_intervals,
                                           grace=sched.catchup.grace)
            except DefinitionError as exc:
                raise ConfigError(str(exc).partition(". Fix:")[0], file=str(sla_file),
                                  path=path, fix="give an explicit duration, e.g. 26h"
                                  ) from None
    raise ConfigError(
        f"no schedule named {name!r} in {', '.join(str(f) for f in files) or 'no file'}",
        file=str(sla_file), path=path,
        fix=(f"use one of {sorted(known)}" if known else
             f"declare it in {folder}/<name>.schedule.yaml, or give a duration"))
