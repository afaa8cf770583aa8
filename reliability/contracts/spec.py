"""Typed contract specs: what a contract file says, independent of pandas or polars.

A contract file guards one input or the output of one step::

    pipeline: reference
    step: validate
    direction: output            # or: input (then `input:` names the parameter)
    kind: dataframe              # dataframe | metrics | model | file
    schema:                      # pandera's serialized DataFrameSchema layout
      columns:
        sample_id: {dtype: int64, unique: true, greater_than_or_equal_to: 0}
        target: {dtype: int64, isin: [0, 1, 2]}
      strict: true               # our default: unknown columns are rejected

The ``schema`` block follows pandera's YAML serialization (``columns`` with ``dtype``,
``nullable``, ``unique``, ``required`` and checks written flat or under ``checks:``). Our
additions are the step binding, strict defaults (``strict: true``, ``min_rows: 1``,
``nullable: false``), library-neutral dtypes, ML gates, drift checks and model/file kinds.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from reliability._spec import Spec
from reliability.contracts.dtypes import DTYPE_NAMES, parse_dtype

__all__ = [
    "ColumnSpec",
    "ContractSpec",
    "DriftSpec",
    "FileSpec",
    "FrameSpec",
    "GateSpec",
    "InRange",
    "MetricField",
    "MetricsSpec",
    "ModelSpec",
    "Range",
    "ValidationSpec",
    "canonical_dtype",
    "dtype_family",
]

def canonical_dtype(name: str) -> str | None:
    """The canonical spelling of a declared dtype (ours, pandas' or polars'), or None."""
    found = parse_dtype(name)
    return None if found is None else found.name


Scalar = bool | int | float | str


Bound = Annotated[float, Field(allow_inf_nan=False)]
"""A finite number: NaN or an infinite bound would make a check fail (or pass) every row."""


class InRange(Spec):
    min_value: Bound | None = None
    max_value: Bound | None = None
    include_min: bool = True
    include_max: bool = True

    @model_validator(mode="after")
    def _not_empty(self) -> InRange:
        lo, hi = self.min_value, self.max_value
        if lo is not None and hi is not None and (
                lo > hi or (lo == hi and not (self.include_min and self.include_max))):
            raise ValueError(f"min_value={lo:g} and max_value={hi:g} admit no value, so "
                             "every row would fail; swap them or widen the range")
        return self


class Range(Spec):
    """The effective numeric range of a column (all its range checks combined)."""

    lo: float | None = None
    hi: float | None = None
    lo_incl: bool = True
    hi_incl: bool = True

    def contains(self, other: Range) -> bool:
        """True when every value allowed by ``other`` is allowed here."""
        if self.lo is not None:
            if other.lo is None or other.lo < self.lo:
                return False
            if other.lo == self.lo and other.lo_incl and not self.lo_incl:
                return False
        if self.hi is not None:
            if other.hi is None or other.hi > self.hi:
                return False
            if other.hi == self.hi and other.hi_incl and not self.hi_incl:
                return False
        return True

    @property
    def bounded(self) -> bool:
        return self.lo is not None or self.hi is not None

    def text(self) -> str:
        left = "[" if self.lo_incl else "("
        right = "]" if self.hi_incl else ")"
        lo = "-inf" if self.lo is None else f"{self.lo:g}"
        hi = "inf" if self.hi is None else f"{self.hi:g}"
        return f"{left}{lo}, {hi}{right}"


_RANGE_KEYS = ("greater_than", "greater_than_or_equal_to", "less_than",
               "less_than_or_equal_to", "in_range")
_FAMILY_TEXT = {"number": "numbers", "text": "strings", "bool": "true/false",
                "time": "no values (set checks do not apply to dates and datetimes)",
                "object": "values"}


def dtype_family(dtype: str) -> str:
    """'number', 'text', 'bool', 'time' or 'object' for a declared dtype."""
    found = parse_dtype(dtype)
    return "object" if found is None else found.family


def _value_family(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    return "text" if isinstance(value, str) else "number"


_CHECK_KEYS = ("greater_than", "greater_than_or_equal_to", "less_than",
               "less_than_or_equal_to", "in_range", "isin", "notin", "str_matches",
               "str_length", "equal_to")


class ColumnSpec(Spec):
    """One column: dtype, nullability, uniqueness and value checks (pandera's names)."""

    dtype: str
    nullable: bool = False
    unique: bool = False
    required: bool = True
    ignore_na: bool = True
    title: str | None = None
    description: str | None = None
    greater_than: Bound | None = None
    greater_than_or_equal_to: Bound | None = Field(None, alias="ge")
    less_than: Bound | None = None
    less_than_or_equal_to: Bound | None = Field(None, alias="le")
    in_range: InRange | None = None
    isin: list[Scalar] | None = Field(None, min_length=1)
    notin: list[Scalar] | None = None
    str_matches: str | None = None
    str_length: InRange | None = None
    equal_to: Scalar | None = Field(None, alias="eq")

    @model_validator(mode="before")
    @classmethod
    def _flatten_checks(cls, data: Any) -> Any:
        """Accept pandera's nested ``checks: {in_range: {...}}`` layout too."""
        checks = data.get("checks") if isinstance(data, dict) else None
        if isinstance(checks, list) and all(isinstance(c, dict) for c in checks):
            checks = {k: v for c in checks for k, v in c.items()}
        if isinstance(checks, dict):
            data = dict(data)
            data.pop("checks")
            for key, value in checks.items():
                data.setdefault(key, value)
        return data

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, value: str) -> str:
        found = canonical_dtype(value)
        if found is None:
            raise ValueError(
                f"unknown dtype {value!r}; use one of {', '.join(DTYPE_NAMES)}")
        return found

    @field_validator("str_matches")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"str_matches {value!r} is not a valid regex ({exc})") from None
        return value

    @model_validator(mode="after")
    def _checks_fit_dtype(self) -> ColumnSpec:
        """Reject checks that cannot apply to the column's dtype (they would otherwise
        crash at validation time or be skipped silently)."""
        family = dtype_family(self.dtype)
        ranges = [k for k in _RANGE_KEYS if getattr(self, k) is not None]
        if ranges and family != "number":
            raise ValueError(f"{', '.join(ranges)} compare numbers, but the column's dtype "
                             f"is {self.dtype}; remove it or use isin/str_length instead")
        text = [k for k in ("str_matches", "str_length") if getattr(self, k) is not None]
        if text and family != "text":
            raise ValueError(f"{', '.join(text)} applies to str or category columns, but "
                             f"the column's dtype is {self.dtype}; remove it or change the dtype")
        for key in ("isin", "notin", "equal_to"):
            value = getattr(self, key)
            values = value if isinstance(value, list) else [] if value is None else [value]
            wrong = [v for v in values
                     if _value_family(v) != family and family != "object"
                     and self.dtype != "category"]
            if wrong:
                raise ValueError(f"{key} value(s) {wrong} cannot occur in a {self.dtype} "
                                 f"column; give {_FAMILY_TEXT[family]}")
        return self

    def value_range(self) -> Range:
        lo: float | None = None
        hi: float | None = None
        lo_incl = hi_incl = True
        cands_lo = [(self.greater_than, False), (self.greater_than_or_equal_to, True)]
        cands_hi = [(self.less_than, False), (self.less_than_or_equal_to, True)]
        if self.in_range is not None:
            cands_lo.append((self.in_range.min_value, self.in_range.include_min))
            cands_hi.append((self.in_range.max_value, self.in_range.include_max))
        for v, incl in cands_lo:
            if v is not None and (lo is None or v > lo or (v == lo and not incl)):
                lo, lo_incl = v, incl
        for v, incl in cands_hi:
            if v is not None and (hi is None or v < hi or (v == hi and not incl)):
                hi, hi_incl = v, incl
        return Range(lo=lo, hi=hi, lo_incl=lo_incl, hi_incl=hi_incl)

    def check_names(self) -> list[str]:
        return [k for k in _CHECK_KEYS if getattr(self, k) is not None]


class ValidationSpec(Spec):
    """Switches that weaken validation; ``reliability contracts lint`` warns about them."""

    enabled: bool = True
    sample: int | None = Field(None, ge=1)


class FrameSpec(Spec):
    """pandera's serialized DataFrameSchema, with strict defaults."""

    schema_type: Literal["dataframe"] = "dataframe"
    api: Literal["pandas", "polars"] | None = None
    version: str | None = None
    name: str | None = None
    title: str | None = None
    description: str | None = None
    columns: dict[str, ColumnSpec] = Field(default_factory=dict)
    strict: bool | Literal["filter"] = True
    ordered: bool = False
    unique: list[str] | None = None
    coerce: bool = False
    min_rows: int = Field(1, ge=0)
    max_rows: int | None = Field(None, ge=0)

    @field_validator("unique", mode="before")
    @classmethod
    def _unique_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _unique_names_columns(self) -> FrameSpec:
        if self.max_rows is not None and self.max_rows < self.min_rows:
            raise ValueError(f"max_rows={self.max_rows} is below min_rows={self.min_rows}, so "
                             "every frame fails; raise max_rows or lower min_rows")
        for col in self.unique or []:
            if col not in self.columns:
                raise ValueError(f"unique names column {col!r}, which is not declared; "
                                 f"declared columns: {sorted(self.columns)}")
        return self


class MetricField(Spec):
    type: Literal["float", "int", "bool", "str"] = "float"
    nullable: bool = False
    min: Bound | None = None
    max: Bound | None = None


class MetricsSpec(Spec):
    """A step's dict output (e.g. evaluation metrics): keys, types and ranges."""

    fields: dict[str, MetricField] = Field(default_factory=dict)
    strict: bool = True


class GateSpec(Spec):
    """A model quality gate: ``metric`` must be >= ``min`` and/or <= ``max``."""

    metric: str
    min: Bound | None = None
    max: Bound | None = None

    @model_validator(mode="after")
    def _has_bound(self) -> GateSpec:
        if self.min is None and self.max is None:
            raise ValueError(f"gate on {self.metric!r} needs min or max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"gate on {self.metric!r}: min={self.min:g} is above "
                             f"max={self.max:g}, so no model passes; swap them")
        return self


class DriftSplit(Spec):
    column: str
    reference: Scalar
    current: Scalar


class DriftSpec(Spec):
    """Distribution drift between training (reference) and new (current) data."""

    columns: list[str] = Field(min_length=1)
    method: Literal["psi", "ks"] = "psi"
    threshold: float = Field(gt=0, allow_inf_nan=False)
    bins: int = Field(10, ge=2, le=100)
    split: DriftSplit | None = None
    baseline: str | None = None

    @model_validator(mode="after")
    def _one_reference(self) -> DriftSpec:
        if (self.split is None) == (self.baseline is None):
            raise ValueError("drift needs exactly one of split (reference/current rows of "
                             "the same frame) or baseline (a CSV of training data)")
        return self


class ModelSpec(Spec):
    """A model artifact: methods it must have; predictions on a probe input."""

    methods: list[str] = Field(default_factory=lambda: ["predict"])
    probe: str | None = None
    features: list[str] | None = None
    predictions: ColumnSpec | None = None


class FileSpec(Spec):
    suffix: str | None = None
    min_bytes: int = Field(1, ge=0)
    max_bytes: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _sizes(self) -> FileSpec:
        if self.max_bytes is not None and self.max_bytes < self.min_bytes:
            raise ValueError(f"max_bytes={self.max_bytes} is below min_bytes={self.min_bytes}, "
                             "so every file fails; raise max_bytes or lower min_bytes")
        return self


class ContractSpec(Spec):
    """A contract file: which step/direction it guards and the rules."""

    contract: str | None = None
    description: str | None = None
    pipeline: str
    step: str
    direction: Literal["input", "output"]
    input: str | None = None
    kind: Literal["dataframe", "metrics", "model", "file"] = "dataframe"
    backend: Literal["pandas", "polars", "any"] = "any"
    frame: FrameSpec | None = Field(None, alias="schema")
    metrics: MetricsSpec | None = None
    gates: list[GateSpec] = Field(default_factory=list)
    drift: list[DriftSpec] = Field(default_factory=list)
    model: ModelSpec | None = None
    file: FileSpec | None = None
    validation: ValidationSpec = Field(default_factory=lambda: ValidationSpec.model_validate({}))
    synthesize: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> ContractSpec:
        if self.direction == "input" and not self.input:
            raise ValueError("an input contract must name the parameter it guards (input: NAME)")
        if self.direction == "output" and self.input:
            raise ValueError("an output contract takes no `input` key; remove it")
        needs = {"dataframe": "schema", "metrics": "metrics", "model": "model", "file": "file"}
        key = needs[self.kind]
        present = {"schema": self.frame, "metrics": self.metrics, "model": self.model,
                   "file": self.file}
        if present[key] is None and not (self.kind == "metrics" and self.gates):
            raise ValueError(f"kind {self.kind!r} needs a `{key}:` block")
        for other, value in present.items():
            if other != key and value is not None:
                raise ValueError(f"`{other}:` does not apply to kind {self.kind!r}; "
                                 f"use kind: {_kind_of(other)} or remove it")
        if self.drift and self.kind != "dataframe":
            raise ValueError("drift checks apply to kind: dataframe only")
        return self

    @property
    def name(self) -> str:
        if self.contract:
            return self.contract
        tail = f"input.{self.input}" if self.direction == "input" else "output"
        return f"{self.pipeline}.{self.step}.{tail}"

    @property
    def key(self) -> tuple[str, str, str]:
        """(step, direction, input parameter or '') — one contract per key."""
        return (self.step, self.direction, self.input or "")


def _kind_of(block: str) -> str:
    return {"schema": "dataframe"}.get(block, block)
