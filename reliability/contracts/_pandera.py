"""Bridges to pandera: build its schemas from our specs, read its lazy failure reports,
and turn pandera schemas or DataFrameModels declared in Python into our specs.

pandera is imported here only, and only when needed (it costs about half a second).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from reliability.contracts.dtypes import DTYPE_NAMES, pandas_accepts, parse_dtype, polars_dtype
from reliability.contracts.findings import Finding
from reliability.contracts.spec import ColumnSpec, FrameSpec, canonical_dtype
from reliability.errors import ConfigError

__all__ = ["build_schema", "lazy_report", "spec_from_pandera"]

log = logging.getLogger("reliability.contracts")
_SAMPLE = 5


def _checks(pa: Any, col: ColumnSpec) -> list[Any]:
    Check = pa.Check
    kw = {"ignore_na": col.ignore_na}
    out: list[Any] = []
    rng = col.value_range()
    if rng.lo is not None and rng.hi is not None:
        out.append(Check.in_range(rng.lo, rng.hi, include_min=rng.lo_incl,
                                  include_max=rng.hi_incl, **kw))
    elif rng.lo is not None:
        out.append(Check.ge(rng.lo, **kw) if rng.lo_incl else Check.gt(rng.lo, **kw))
    elif rng.hi is not None:
        out.append(Check.le(rng.hi, **kw) if rng.hi_incl else Check.lt(rng.hi, **kw))
    if col.isin is not None:
        out.append(Check.isin(list(col.isin), **kw))
    if col.notin is not None:
        out.append(Check.notin(list(col.notin), **kw))
    if col.equal_to is not None:
        out.append(Check.eq(col.equal_to, **kw))
    if col.str_matches is not None:
        out.append(Check.str_matches(col.str_matches, **kw))
    return out


def build_schema(spec: FrameSpec, backend: str, *, frame: Any = None) -> Any:
    """A pandera DataFrameSchema (pandas or polars API) equivalent to ``spec``.

    With ``frame`` (pandas), a column whose dtype the contract accepts keeps that dtype in
    the schema -- e.g. the nullable ``Int64`` for ``int64`` -- so the report re-judges only
    what our own check found wrong.
    """
    import importlib

    pa = importlib.import_module(f"pandera.{'polars' if backend == 'polars' else 'pandas'}")

    def dtype(column: str, name: str) -> Any:
        want = parse_dtype(name)
        assert want is not None  # the spec validated it
        if backend == "polars":
            return polars_dtype(want)
        if want.kind in {"str", "date", "decimal"}:
            return None  # checked by value (object and str variants)
        if frame is not None and column in getattr(frame, "columns", ()):
            actual = frame[column].dtype
            if pandas_accepts(want, actual)[0]:
                return actual
        return want.name

    columns = {
        name: pa.Column(dtype(name, col.dtype), checks=_checks(pa, col),
                        nullable=col.nullable, unique=col.unique, required=col.required)
        for name, col in spec.columns.items()
    }
    return pa.DataFrameSchema(columns, strict=spec.strict, ordered=spec.ordered,
                              unique=spec.unique, name=spec.name)


def lazy_report(spec: FrameSpec, backend: str, frame: Any) -> list[Finding]:
    """Every failure pandera's lazy validation finds, grouped by (column, check)."""
    try:
        import pandera.errors as pe

        schema = build_schema(spec, backend, frame=frame)
        try:
            schema.validate(frame, lazy=True)
        except pe.SchemaErrors as exc:
            return _group(exc.failure_cases)
        except pe.SchemaError as exc:  # pragma: no cover - non-lazy path
            return [Finding(None, str(getattr(exc, "check", "schema")), 1, [str(exc)])]
    except Exception as exc:  # the fast path's own findings still stand
        log.debug("pandera report unavailable: %s", exc)
    return []


def _group(cases: Any) -> list[Finding]:
    rows = cases.to_dicts() if hasattr(cases, "to_dicts") else cases.to_dict("records")
    grouped: dict[tuple[Any, str], list[Any]] = defaultdict(list)
    for row in rows:
        column, check = row.get("column"), str(row.get("check"))
        if column is None and check == "column_in_dataframe":
            column = row.get("failure_case")
        grouped[(column, check)].append(row.get("failure_case"))
    return [Finding(None if col is None else str(col), check, len(vals), vals[:_SAMPLE])
            for (col, check), vals in grouped.items()]


_CHECK_MAP = {"greater_than": "greater_than", "greater_than_or_equal_to": "ge",
              "less_than": "less_than", "less_than_or_equal_to": "le", "isin": "isin",
              "notin": "notin", "str_matches": "str_matches", "equal_to": "eq"}


def spec_from_pandera(schema: Any) -> FrameSpec:
    """Our FrameSpec for a pandera DataFrameSchema or DataFrameModel (pandas or polars)."""
    if isinstance(schema, type) and hasattr(schema, "to_schema"):
        schema = schema.to_schema()
    name = getattr(schema, "name", None) or type(schema).__name__
    columns: dict[str, Any] = {}
    for cname, col in schema.columns.items():
        dtype = canonical_dtype(str(col.dtype)) if col.dtype is not None else None
        where = f"pandera schema {name!r} column {cname!r}"
        if dtype is None:
            raise ConfigError(f"{where}: dtype {col.dtype} has no contract equivalent",
                              fix=f"use one of {', '.join(DTYPE_NAMES)}")
        entry: dict[str, Any] = {"dtype": dtype, "nullable": bool(col.nullable),
                                 "unique": bool(col.unique), "required": bool(col.required)}
        for check in col.checks:
            entry.update(_check_entry(check, where))
        if any(getattr(check, "ignore_na", True) is False for check in col.checks):
            entry["ignore_na"] = False
        columns[str(cname)] = entry
    unique = schema.unique if schema.unique else None
    from reliability._spec import parse_model

    return parse_model({
        "columns": columns, "strict": schema.strict, "ordered": bool(schema.ordered),
        "unique": unique, "name": getattr(schema, "name", None), "min_rows": 0},
        FrameSpec, file=f"pandera schema {name!r}")


def _check_entry(check: Any, where: str) -> dict[str, Any]:
    cname = check.name
    stats = dict(getattr(check, "statistics", {}) or {})
    if cname == "in_range":
        return {"in_range": {"min_value": stats.get("min_value"),
                             "max_value": stats.get("max_value"),
                             "include_min": stats.get("include_min", True),
                             "include_max": stats.get("include_max", True)}}
    if cname in _CHECK_MAP:
        value = next(iter(stats.values())) if stats else None
        if cname in {"isin", "notin"}:
            value = sorted(value, key=repr) if value is not None else []
        return {_CHECK_MAP[cname]: value}
    raise ConfigError(f"{where}: check {cname!r} cannot be expressed as a contract rule",
                      fix=f"use one of {', '.join(sorted(_CHECK_MAP))} or in_range")
