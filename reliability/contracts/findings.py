"""Failure records shared by every validator backend, and the structural frame checks."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import field
from typing import Any

from reliability._record import record
from reliability.contracts.spec import FrameSpec

__all__ = ["Finding", "jsonable", "structural_findings"]


@record(slots=True)
class Finding:
    """One failing check: which column, which check, how many rows, sample cases."""

    column: str | None
    check: str
    failure_count: int
    failure_cases: list[Any] = field(default_factory=list)
    actual: str | None = None  # a dtype check: the type the column actually has

    def as_dict(self, contract: str) -> dict[str, Any]:
        out = {"contract": contract, "column": self.column, "check": self.check,
               "failure_count": int(self.failure_count),
               "failure_cases": [jsonable(v) for v in self.failure_cases]}
        if self.actual is not None:
            out["actual"] = self.actual
        return out


def jsonable(value: Any) -> Any:
    """Make a failure case safe for JSON (numpy scalars, NaN/inf, timestamps)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__ == "numpy":
        value = item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    iso = getattr(value, "isoformat", None)
    return iso() if callable(iso) else repr(value)


def structural_findings(spec: FrameSpec, present: Sequence[str], rows: int) -> list[Finding]:
    """Row-count bounds, missing/unknown columns and column order."""
    out: list[Finding] = []
    if rows < spec.min_rows:
        out.append(Finding(None, f"min_rows({spec.min_rows})", 1, [rows]))
    if spec.max_rows is not None and rows > spec.max_rows:
        out.append(Finding(None, f"max_rows({spec.max_rows})", 1, [rows]))
    names = set(present)
    missing = [c for c, col in spec.columns.items() if col.required and c not in names]
    for c in missing:
        out.append(Finding(c, "column_in_dataframe", 1, [c]))
    if spec.strict is True:
        extra = [c for c in present if c not in spec.columns]
        if extra:
            out.append(Finding(None, "column_in_schema", len(extra), list(extra[:5])))
    if spec.ordered:
        expected = [c for c in spec.columns if c in names]
        actual = [c for c in present if c in spec.columns]
        if expected != actual:
            out.append(Finding(None, "column_ordered", 1, [actual]))
    return out
