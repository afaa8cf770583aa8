"""Loading contracts from YAML (or declaring them in Python) into a :class:`ContractSet`.

``load_contracts("contracts", pipeline)`` reads ``contracts/<pipeline>/*.yaml`` when that
folder exists, else every contract file directly in ``contracts/``. Files named
``*.sla.yaml`` or ``*.schedule.yaml`` belong to other features and are skipped. Every
problem (malformed YAML, unknown key, dtype or check, a step or input that does not exist)
is one :class:`~reliability.errors.ConfigError` naming the file, the key path and the fix.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reliability._spec import load_yaml, parse_model
from reliability.contracts.engine import Contract
from reliability.contracts.spec import ContractSpec
from reliability.errors import ConfigError

if TYPE_CHECKING:
    from reliability.pipeline import Pipeline

__all__ = ["ContractSet", "contract_files", "load_contracts", "load_specs"]

_FOREIGN = (".sla.yaml", ".sla.yml", ".schedule.yaml", ".schedule.yml")


class ContractSet:
    """The contracts of one pipeline, indexed by (step, direction, input)."""

    def __init__(self, contracts: list[Contract] | None = None, *,
                 pipeline: str | None = None) -> None:
        self.pipeline = pipeline
        self._by_key: dict[tuple[str, str, str], Contract] = {}
        for c in contracts or []:
            self.add(c)

    def __iter__(self) -> Iterator[Contract]:
        return iter(self._by_key.values())

    def __len__(self) -> int:
        return len(self._by_key)

    def __repr__(self) -> str:
        return f"ContractSet({sorted(c.name for c in self)})"

    def add(self, contract: Contract) -> Contract:
        key = contract.spec.key
        if key in self._by_key:
            other = self._by_key[key]
            raise ConfigError(
                f"two contracts guard the same {' '.join(filter(None, key))}: "
                f"{other.name!r} ({other.file or 'python'}) and {contract.name!r}",
                file=contract.file, path=["step"],
                fix="merge them into one contract or remove one")
        self._by_key[key] = contract
        return contract

    def add_pandera(self, schema: Any, *, step: str, direction: str = "output",
                    input: str | None = None, pipeline: str | None = None,
                    name: str | None = None) -> Contract:
        """Add a contract declared in Python (pandera DataFrameSchema or DataFrameModel)."""
        from reliability.contracts._pandera import spec_from_pandera

        frame = spec_from_pandera(schema)
        spec = ContractSpec.model_validate({
            "contract": name, "pipeline": pipeline or self.pipeline or "", "step": step,
            "direction": direction, "input": input, "kind": "dataframe",
            "schema": frame.model_dump(by_alias=False, exclude_none=True)})
        return self.add(Contract(spec))

    def inputs(self, step: str) -> dict[str, Contract]:
        return {c.spec.input or "": c for c in self
                if c.step == step and c.direction == "input"}

    def output(self, step: str) -> Contract | None:
        return self._by_key.get((step, "output", ""))

    def steps(self) -> list[str]:
        return sorted({c.step for c in self})


def contract_files(directory: str | Path) -> list[Path]:
    d = Path(directory)
    if not d.is_dir():
        raise ConfigError("contracts directory not found", file=str(d),
                          fix="create it, or point at the folder holding contract YAML files")
    return sorted(p for p in d.iterdir()
                  if p.suffix in {".yaml", ".yml"} and not p.name.endswith(_FOREIGN))


def load_specs(directory: str | Path, pipeline: str | None = None) -> list[Contract]:
    """Parse every contract file (no pipeline checks) — for lint and diff."""
    d = Path(directory)
    if pipeline and (d / pipeline).is_dir():
        d = d / pipeline
    out = []
    for f in contract_files(d):
        data = load_yaml(f)
        if data is None:
            raise ConfigError("file is empty", file=str(f),
                              fix="add pipeline, step, direction and the rules")
        out.append(Contract(_parse(data, str(f)), file=str(f), base_dir=f.parent))
    return out


def _parse(data: Any, file: str) -> ContractSpec:
    if not isinstance(data, dict):
        raise ConfigError(f"a contract file holds a mapping of keys, not a "
                          f"{type(data).__name__}", file=file,
                          fix="start with `pipeline:`, `step:` and `direction:` lines, then "
                              "the rules (see contracts/reference/ for examples)")
    try:
        return parse_model(data, ContractSpec, file=file)
    except ConfigError as err:
        if err.reason != "unknown key":
            raise
        known = _allowed_keys(err.path[:-1])
        close = difflib.get_close_matches(str(err.path[-1]), known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"unknown key {err.path[-1]!r}", file=file, path=err.path,
                          fix=f"{hint}allowed keys here: {', '.join(sorted(known))}"
                          ) from None


def _allowed_keys(path: Any) -> list[str]:
    """Field names (aliases included) valid at ``path`` of a contract file."""
    import typing

    from pydantic import BaseModel

    current: Any = ContractSpec
    skip = False
    for part in path:
        if skip or isinstance(part, int):
            skip = False
            continue
        fields = getattr(current, "model_fields", {})
        field = next((f for n, f in fields.items() if part in (n, f.alias)), None)
        if field is None:
            return []
        ann = field.annotation
        args = [a for a in typing.get_args(ann) if a is not type(None)] or [ann]
        if typing.get_origin(ann) is dict:
            args, skip = [typing.get_args(ann)[1]], True
        elif typing.get_origin(ann) is list:
            args = [typing.get_args(ann)[0]]
        current = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)),
                       None)
    fields = getattr(current, "model_fields", {})
    return [f.alias or n for n, f in fields.items()] + [
        n for n, f in fields.items() if f.alias]


def load_contracts(directory: str | Path, pipeline: Pipeline) -> ContractSet:
    """Load and check every contract of ``pipeline`` under ``directory``."""
    contracts = load_specs(directory, pipeline.name)
    out = ContractSet(pipeline=pipeline.name)
    for c in contracts:
        _check_against(c, pipeline)
        out.add(c)
    return out


def _check_against(c: Contract, pipeline: Pipeline) -> None:
    s = c.spec
    if s.pipeline != pipeline.name:
        raise ConfigError(f"contract names pipeline {s.pipeline!r}, but it is loaded for "
                          f"pipeline {pipeline.name!r}", file=c.file, path=["pipeline"],
                          fix=f"write pipeline: {pipeline.name}, or move the file to "
                              f"contracts/{s.pipeline}/")
    if s.step not in pipeline.steps:
        raise ConfigError(f"step {s.step!r} does not exist in pipeline {pipeline.name!r}",
                          file=c.file, path=["step"], fix=_choose(s.step, pipeline.steps))
    spec = pipeline.steps[s.step]
    if s.input is not None and s.input not in spec.inputs:
        raise ConfigError(f"step {s.step!r} has no input {s.input!r}", file=c.file,
                          path=["input"], fix=_choose(s.input, spec.inputs))
    if s.model is not None and s.model.probe is not None and s.model.probe not in spec.inputs:
        raise ConfigError(f"model probe {s.model.probe!r} is not an input of step {s.step!r}",
                          file=c.file, path=["model", "probe"],
                          fix=_choose(s.model.probe, spec.inputs))
    columns = set(s.frame.columns) if s.frame else set()
    for i, d in enumerate(s.drift):
        needed = [*d.columns, *([d.split.column] if d.split else [])]
        for col in needed:
            if col not in columns:
                raise ConfigError(f"drift column {col!r} is not declared in schema.columns",
                                  file=c.file, path=["drift", i],
                                  fix=_choose(col, columns))
        if d.baseline and not (c.base_dir / d.baseline).is_file():
            raise ConfigError(f"drift baseline {d.baseline!r} not found next to the contract",
                              file=c.file, path=["drift", i, "baseline"],
                              fix="give a CSV path relative to the contract file")


def _choose(value: str, options: Any) -> str:
    names = sorted(options)
    close = difflib.get_close_matches(value, names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}use one of {names}"
