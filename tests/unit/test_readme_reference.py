"""The README's reference of every file kind is true: each documented key is a key of its spec
model (with the documented default), each key of the models is documented, and each example
loads."""

from __future__ import annotations

import datetime as dt
import enum
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


@dataclass(frozen=True)
class Key:
    path: str                  # canonical: field names, `[]` for list items, `*` for dict keys
    variants: frozenset[str]   # the path spelled with each field's name or alias
    fields: tuple[FieldInfo, ...]  # one per model holding it (fault types share `method[]`)
    owners: tuple[type[BaseModel], ...]
    section: bool              # its value is a mapping of further keys
    same_as: str | None        # a model documented at another path first


def _models(annotation: Any) -> tuple[list[type[BaseModel]], str]:
    """The models an annotation holds, and the segment suffix its container adds."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        found: list[type[BaseModel]] = []
        suffix = ""
        for arg in typing.get_args(annotation):
            models, s = _models(arg)
            found += models
            suffix = suffix or s
        return found, suffix
    if origin is list:
        return _models(typing.get_args(annotation)[0])[0], "[]"
    if origin is dict:
        return _models(typing.get_args(annotation)[1])[0], ".*"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation], ""
    return [], ""


@dataclass
class _Walk:
    keys: dict[str, Key]
    prefixes: dict[str, str]   # a spelling of a model's prefix -> its canonical prefix
    first: dict[type[BaseModel], str]  # where each model's keys were documented first
    dynamic: dict[str, type[BaseModel]]


def _walk(w: _Walk, models: list[type[BaseModel]], prefix: str,
          spellings: frozenset[str]) -> None:
    for model in models:
        w.first.setdefault(model, prefix.removesuffix("."))
        for name, info in model.model_fields.items():
            path = prefix + name
            names = {name} | ({info.alias} if info.alias else set())
            variants = frozenset(p + n for p in spellings for n in names)
            inner, suffix = _models(info.annotation)
            if path in w.dynamic:
                inner, suffix = [w.dynamic[path]], ".*"
            known = w.keys.get(path)
            same = next((w.first[m] for m in inner if m in w.first), None)
            w.keys[path] = Key(path, variants | (known.variants if known else frozenset()),
                               (known.fields if known else ()) + (info,),
                               (known.owners if known else ()) + (model,), bool(inner), same)
            if inner and same is None:
                child = frozenset(v + suffix + "." for v in variants)
                for c in child:
                    w.prefixes[c.removesuffix(".")] = path + suffix
                _walk(w, inner, path + suffix + ".", child)


def walk(models: list[type[BaseModel]], dynamic: dict[str, type[BaseModel]] | None = None
         ) -> _Walk:
    w = _Walk({}, {}, {}, dynamic or {})
    _walk(w, models, "", frozenset({""}))
    return w




def _project() -> _Walk:
    from reliability.project import ProjectSpec

    return walk([ProjectSpec])


def _contract() -> _Walk:
    from reliability.contracts.spec import ContractSpec

    return walk([ContractSpec])


def _experiment() -> _Walk:
    from reliability.chaos.experiment import ExperimentSpec

    return walk([ExperimentSpec])


def _sla() -> _Walk:
    from reliability.sla.spec import _Body, _SLAFile

    return walk([_SLAFile], dynamic={"steps": _Body})


def _schedule() -> _Walk:
    from reliability.schedule.spec import ScheduleFile

    return walk([ScheduleFile])


KINDS = {"reliability.yaml": _project, "contract": _contract, "chaos experiment": _experiment,
         "SLA": _sla, "schedule": _schedule}

SECTIONS = {"reliability.yaml": "reliability.yaml", "Contract files": "contract",
            "Chaos experiments": "chaos experiment", "SLA files": "SLA",
            "Schedule files": "schedule"}


@dataclass(frozen=True)
class Row:
    key: str
    default: str
    faults: str | None
    meaning: str


def reference() -> dict[str, tuple[list[Row], list[str]]]:
    """Per file kind: the rows of its tables and its YAML examples."""
    text = README.read_text(encoding="utf-8")
    body = text.split("## Reference: project files", 1)[1].split("\n## ", 1)[0]
    out: dict[str, tuple[list[Row], list[str]]] = {}
    for part in body.split("\n### ")[1:]:
        title, _, content = part.partition("\n")
        rows = []
        for line in content.splitlines():
            if not line.startswith("| `"):
                continue
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            key = re.match(r"`([^`]+)`", cells[0])
            assert key, line
            faults = cells[2] if len(cells) == 4 else None
            rows.append(Row(key[1], cells[1], faults, cells[-1]))
        examples = re.findall(r"```yaml\n(.*?)```", content, re.S)
        out[SECTIONS[title.strip()]] = (rows, examples)
    return out


def _resolve(w: _Walk, path: str) -> Key:
    found = [k for k in w.keys.values() if path in k.variants]
    assert len(found) == 1, f"{path!r} is not a key of the spec models"
    return found[0]


def _same(value: Any, default: Any) -> bool:
    from reliability.schedule.spec import parse_duration as schedule_duration
    from reliability.sla.spec import parse_duration as sla_duration

    if isinstance(default, enum.Enum):
        default = default.value
    if isinstance(default, dt.timedelta):
        return bool(schedule_duration(value) == default)
    if isinstance(default, float) and isinstance(value, str):
        return bool(sla_duration(value) == default)
    return bool(value == default)


def _default_matches(cell: str, key: Key) -> bool:
    """``required``, ``—`` (unset), empty (a section), or a backticked YAML value."""
    if cell == "required":  # or the type tag of a union of models (faults)
        tags = [f.get_default() for f in key.fields if not f.is_required()]
        return any(f.is_required() for f in key.fields) or (
            len(key.owners) > 1 and len(set(tags)) == len(key.owners))
    if not cell:
        return key.section
    defaults = [None if f.is_required() else f.get_default(call_default_factory=True)
                for f in key.fields]
    if cell.startswith("—"):
        return None in defaults
    m = re.match(r"`([^`]*)`", cell)
    if not m:
        return False
    try:
        value = yaml.safe_load(m[1])
    except yaml.YAMLError:
        value = m[1]
    return any(_same(value, d) or _same(m[1], d) for d in defaults if d is not None)


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_documented_key_is_a_spec_key_with_its_default(kind: str) -> None:
    w = KINDS[kind]()
    rows, _ = reference()[kind]
    seen: set[str] = set()
    for row in rows:
        key = _resolve(w, row.key)
        assert key.path not in seen, f"{row.key} is documented twice"
        seen.add(key.path)
        assert _default_matches(row.default, key), (
            f"{kind}: {row.key} is documented with default {row.default!r}; the model says "
            f"{[None if f.is_required() else f.get_default(call_default_factory=True) for f in key.fields]}")
        if key.same_as is not None:
            same = re.search(r"same keys as `([^`]+)`", row.meaning)
            assert same, f"{row.key}: say which keys it takes (`same keys as ...`)"
            assert w.prefixes.get(same[1], _resolve(w, same[1]).path if same[1] in
                                  {v for k in w.keys.values() for v in k.variants} else None
                                  ) == key.same_as, f"{row.key}: same keys as {key.same_as}"
        if row.faults is not None:
            types_ = {f.get_default() for f in (o.model_fields["type"] for o in key.owners)}
            everyone = {o.model_fields["type"].get_default() for o in
                        _fault_types()}
            documented = everyone if row.faults == "all" else \
                {t.strip() for t in row.faults.split(",")}
            assert documented == types_, f"{row.key} applies to {sorted(types_)}"


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_spec_key_is_documented(kind: str) -> None:
    w = KINDS[kind]()
    rows, _ = reference()[kind]
    documented = {_resolve(w, r.key).path for r in rows}
    missing = sorted(set(w.keys) - documented)
    assert not missing, f"README reference of {kind} lacks {missing}"


def _fault_types() -> list[type[BaseModel]]:
    from reliability.chaos.faults import FAULT_TYPES

    return list(FAULT_TYPES.values())


def test_every_example_loads(tmp_path: Path) -> None:
    from reliability._spec import parse_model
    from reliability.chaos.experiment import load_experiment
    from reliability.contracts.spec import ContractSpec
    from reliability.pipeline import Pipeline
    from reliability.project import ProjectSpec
    from reliability.schedule.spec import load_schedules
    from reliability.sla.spec import load_slas

    ref = reference()
    for kind, load in (
            ("reliability.yaml", lambda d, p: parse_model(d, ProjectSpec)),
            ("contract", lambda d, p: parse_model(d, ContractSpec)),
            ("chaos experiment", lambda d, p: load_experiment(d)),
            ("SLA", lambda d, p: load_slas(p)),
            ("schedule", lambda d, p: load_schedules(p, resolve=lambda ref: Pipeline("orders")))):
        examples = ref[kind][1]
        assert examples, f"the README shows no {kind} example"
        for i, text in enumerate(examples):
            path = tmp_path / f"{kind.replace(' ', '_')}-{i}.yaml"
            path.write_text(text, encoding="utf-8")
            assert load(yaml.safe_load(text), path) is not None
