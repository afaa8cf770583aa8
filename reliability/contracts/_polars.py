"""The fused polars validator: every rule of a frame contract in one polars query.

Structure (columns, dtypes) is read from the schema without touching data; every data
rule becomes a failure-count expression and all of them run in a single ``select`` (one
``collect`` for a LazyFrame, so LazyFrames are validated for data, not schema only).
Sample failure cases are fetched only for the rules that fail.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from reliability.contracts.dtypes import parse_dtype, polars_accepts
from reliability.contracts.findings import Finding, structural_findings
from reliability.contracts.spec import ColumnSpec, FrameSpec

__all__ = ["PolarsValidator", "polars_dtype_name"]

_SAMPLE = 5
_FLOATS = frozenset({"Float32", "Float64"})


def polars_dtype_name(dtype: Any) -> str:
    return getattr(dtype, "__name__", None) or type(dtype).__name__


def _column_rules(name: str, col: ColumnSpec, dtype_name: str) -> list[tuple[str, pl.Expr]]:
    """(check, failing-row mask expression) for one column."""
    c = pl.col(name)
    is_float = dtype_name in _FLOATS
    rules: list[tuple[str, pl.Expr]] = []
    # nulls skip value checks only where they are allowed and ignore_na says so
    nullable = col.nullable and col.ignore_na
    if not col.nullable:
        rules.append(("not_nullable", (c.is_null() | c.is_nan()) if is_float else c.is_null()))
    rng = col.value_range()
    if rng.bounded:
        ok: pl.Expr = pl.lit(True)
        if rng.lo is not None:
            ok = ok & ((c >= rng.lo) if rng.lo_incl else (c > rng.lo))
        if rng.hi is not None:
            ok = ok & ((c <= rng.hi) if rng.hi_incl else (c < rng.hi))
        if is_float:  # NaN compares greater than every number: it is never in range
            ok = ok & ~c.is_nan()
        rules.append((f"in_range{rng.text()}", _skip_na(~ok, c, nullable, is_float)))
    if col.isin is not None:
        rules.append((f"isin({list(col.isin)})", _skip_na(
            ~c.is_in(list(col.isin), nulls_equal=False), c, nullable, is_float)))
    if col.notin is not None:
        rules.append((f"notin({list(col.notin)})", c.is_in(list(col.notin)).fill_null(False)))
    if col.equal_to is not None:
        rules.append((f"equal_to({col.equal_to!r})",
                      _skip_na(c != col.equal_to, c, nullable, is_float)))
    if col.str_matches is not None:
        rules.append((f"str_matches({col.str_matches!r})",
                      (~c.cast(pl.String).str.contains(f"^(?:{col.str_matches})"))
                      .fill_null(not nullable)))
    if col.str_length is not None:
        lo, hi = col.str_length.min_value, col.str_length.max_value
        n = c.cast(pl.String).str.len_chars()
        ok_len = (n >= (lo or 0)) & (n <= hi if hi is not None else pl.lit(True))
        rules.append((f"str_length({lo}, {hi})", (~ok_len).fill_null(not nullable)))
    if col.unique:
        rules.append(("field_uniqueness", c.is_duplicated()))
    return rules


def _skip_na(bad: pl.Expr, c: pl.Expr, nullable: bool, is_float: bool) -> pl.Expr:
    """``bad`` with nulls (and NaN in floats) failing, or exempt where ``nullable``."""
    if nullable:
        bad = bad & c.is_not_null() & (~c.is_nan() if is_float else pl.lit(True))
    return bad.fill_null(not nullable)


class PolarsValidator:
    """Validate a polars DataFrame or LazyFrame against a :class:`FrameSpec`."""

    def __init__(self, spec: FrameSpec) -> None:
        self.spec = spec

    def _plan(self, schema: Any) -> tuple[list[Finding], list[tuple[str, str, pl.Expr]]]:
        findings: list[Finding] = []
        plan: list[tuple[str, str, pl.Expr]] = []
        for name, col in self.spec.columns.items():
            if name not in schema:
                continue
            got = polars_dtype_name(schema[name])
            want = parse_dtype(col.dtype)
            if want is None or not polars_accepts(want, schema[name]):
                findings.append(Finding(name, f"dtype('{col.dtype}')", 1, [str(schema[name])],
                                        actual=str(schema[name])))
                continue
            plan.extend((name, check, mask) for check, mask in _column_rules(name, col, got))
        if self.spec.unique and all(c in schema for c in self.spec.unique):
            plan.append((",".join(self.spec.unique), "multiple_fields_uniqueness",
                         pl.struct(self.spec.unique).is_duplicated()))
        return findings, plan

    def __call__(self, frame: pl.DataFrame | pl.LazyFrame) -> tuple[int, list[Finding]]:
        lazy = isinstance(frame, pl.LazyFrame)
        schema = frame.collect_schema() if lazy else frame.schema
        type_findings, plan = self._plan(schema)
        exprs = [pl.len().alias("__rows")]
        for i, (name, check, mask) in enumerate(plan):
            if check == "field_uniqueness":  # n_unique is cheaper than is_duplicated
                exprs.append((pl.len() - pl.col(name).n_unique()).alias(f"r{i}"))
            else:
                exprs.append(mask.sum().alias(f"r{i}"))
        counts = (frame.select(exprs).collect() if isinstance(frame, pl.LazyFrame)
                  else frame.select(exprs)).row(0)
        rows = int(counts[0])
        findings = structural_findings(self.spec, list(schema.names()), rows)
        findings.extend(type_findings)
        for i, (name, check, mask) in enumerate(plan):
            if counts[i + 1]:
                findings.append(self._detail(frame, name, check, mask))
        return rows, findings

    @staticmethod
    def _detail(frame: pl.DataFrame | pl.LazyFrame, name: str, check: str,
                mask: pl.Expr) -> Finding:
        cols = name.split(",")
        bad = frame.filter(mask).select(cols)
        sample = bad.head(_SAMPLE)
        count_q = bad.select(pl.len())
        if isinstance(frame, pl.LazyFrame):
            rows = sample.collect()  # type: ignore[union-attr]
            count = int(count_q.collect().item())  # type: ignore[union-attr]
        else:
            rows, count = sample, int(count_q.item())  # type: ignore[union-attr]
        cases = rows.to_series().to_list() if len(cols) == 1 else rows.to_dicts()  # type: ignore[union-attr]
        return Finding(name, check, count, cases)
