"""The fused pandas validator: every rule of a frame contract as one vectorised pass.

Compiled once per contract; on the happy path each rule is a single numpy/pandas
reduction and nothing is allocated per row beyond the boolean masks. It returns
:class:`Finding` records (rule, exact count, sampler) for the rules that fail.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from reliability.contracts.dtypes import pandas_accepts, parse_dtype
from reliability.contracts.findings import Finding, structural_findings
from reliability.contracts.spec import ColumnSpec, FrameSpec

__all__ = ["PandasValidator"]

Arr = Any  # a numpy boolean array
Mask = Callable[[pd.Series], Arr]
_SAMPLE = 5


def _bool(mask: Any) -> Arr:
    if isinstance(mask, pd.Series):
        if mask.dtype == bool:
            return mask.to_numpy()
        return mask.fillna(False).to_numpy(dtype=bool)
    return np.asarray(mask, dtype=bool)


def _numeric(s: pd.Series) -> Arr:
    if isinstance(s.dtype, np.dtype) and s.dtype.kind in "fiu":
        return s.to_numpy()
    # object columns and nullable extension dtypes (Int64, Float64...): NA becomes NaN
    return s.to_numpy(dtype="float64", na_value=np.nan)


class _ColumnRules:
    def __init__(self, name: str, col: ColumnSpec) -> None:
        self.name = name
        self.spec = col
        want = parse_dtype(col.dtype)
        assert want is not None  # the spec validated it
        self.want = want
        self._verdicts: dict[Any, tuple[bool, str | None]] = {}
        self.rules: list[tuple[str, Mask]] = []
        rng = col.value_range()
        if not col.nullable:
            self.rules.append(("not_nullable", self._nulls))
        # nulls skip value checks only where they are allowed and ignore_na says so
        nullable = col.nullable and col.ignore_na
        if rng.bounded:
            self.rules.append((f"in_range{rng.text()}", self._range_mask(rng, nullable)))
        if col.isin is not None:
            allowed = list(col.isin)
            self.rules.append((f"isin({allowed})", lambda s: _bool(
                ~s.isin(allowed) & (s.notna() if nullable else True))))
        if col.notin is not None:
            banned = list(col.notin)
            self.rules.append((f"notin({banned})", lambda s: _bool(s.isin(banned))))
        if col.equal_to is not None:
            value = col.equal_to
            self.rules.append((f"equal_to({value!r})", lambda s: _bool(
                (s != value) & (s.notna() if nullable else True))))
        if col.str_matches is not None:
            pattern = col.str_matches
            # a missing value never matches; it fails unless nulls are let through
            self.rules.append((f"str_matches({pattern!r})", lambda s: _bool(
                ~s.astype("str").str.match(pattern).fillna(False).astype(bool)
                & (s.notna() if nullable else True))))
        if col.str_length is not None:
            lo, hi = col.str_length.min_value, col.str_length.max_value
            self.rules.append((f"str_length({lo}, {hi})", lambda s: _bool(
                ~s.astype("str").str.len().between(lo if lo is not None else 0,
                                                   hi if hi is not None else np.inf)
                & (s.notna() if nullable else True))))
        if col.unique:
            self.rules.append(("field_uniqueness", self._dupes))

    def accepts(self, dtype: Any) -> tuple[bool, str | None]:
        """(the column's dtype satisfies the declared one, value kind an object column
        must hold)."""
        verdict = self._verdicts.get(dtype)
        if verdict is None:
            verdict = self._verdicts[dtype] = pandas_accepts(self.want, dtype)
        return verdict

    @staticmethod
    def _nulls(s: pd.Series) -> Arr:
        if s.dtype.kind == "f" and isinstance(s.dtype, np.dtype):
            return np.isnan(s.to_numpy())
        if s.dtype.kind in "iub" and isinstance(s.dtype, np.dtype):
            return np.zeros(0, dtype=bool)
        return _bool(s.isna())

    @staticmethod
    def _dupes(s: pd.Series) -> Arr:
        if s.is_unique:
            return np.zeros(0, dtype=bool)
        return s.duplicated(keep=False).to_numpy()

    @staticmethod
    def _range_mask(rng: Any, nullable: bool) -> Mask:
        lo, hi, lo_incl, hi_incl = rng.lo, rng.hi, rng.lo_incl, rng.hi_incl

        def mask(s: pd.Series) -> Arr:
            a = _numeric(s)
            ok: Any = True
            if lo is not None:
                ok = (a >= lo) if lo_incl else (a > lo)
            if hi is not None:
                ok = ok & ((a <= hi) if hi_incl else (a < hi))
            bad = ~np.asarray(ok, dtype=bool)
            if nullable and a.dtype.kind == "f":
                bad &= ~np.isnan(a)
            return bad

        return mask


class PandasValidator:
    """Validate a pandas DataFrame against a :class:`FrameSpec` in one pass."""

    def __init__(self, spec: FrameSpec) -> None:
        self.spec = spec
        self.columns = [_ColumnRules(n, c) for n, c in spec.columns.items()]

    def __call__(self, df: pd.DataFrame) -> tuple[int, list[Finding]]:
        rows = len(df)
        present = list(df.columns)
        findings = structural_findings(self.spec, present, rows)
        dtypes = df.dtypes
        names = set(present)
        for col in self.columns:
            if col.name not in names:
                continue
            dtype = dtypes[col.name]
            ok, holds = col.accepts(dtype)
            if not ok:
                got = _describe(df[col.name])
                findings.append(Finding(col.name, f"dtype('{col.spec.dtype}')", 1, [got],
                                        actual=got))
                continue
            s = df[col.name]
            if holds is not None:  # an object column must hold only the declared kind
                wrong = _wrong_objects(s, holds)
                if wrong is not None:
                    cases = _sample(s, wrong)
                    kinds = sorted({type(v).__name__ for v in cases})
                    findings.append(Finding(col.name, f"dtype('{col.spec.dtype}')",
                                            int(wrong.sum()), cases,
                                            actual=f"object holding {', '.join(kinds)}"))
                    continue
            for check, fn in col.rules:
                bad = fn(s)
                count = int(np.count_nonzero(bad)) if bad.size else 0
                if count:
                    findings.append(Finding(col.name, check, count, _sample(s, bad)))
        if self.spec.unique and all(c in names for c in self.spec.unique):
            dup = df.duplicated(subset=self.spec.unique, keep=False).to_numpy()
            if dup.any():
                cases = df.loc[dup, self.spec.unique].head(_SAMPLE).to_dict("records")
                findings.append(Finding(",".join(self.spec.unique), "multiple_fields_uniqueness",
                                        int(dup.sum()), cases))
        return rows, findings


def _wrong_objects(s: pd.Series, dtype: str) -> Arr | None:
    """Mask of the non-null values of an object column that are not ``dtype`` (str or
    date), or None when every value fits."""
    import datetime as dt

    kind = pd.api.types.infer_dtype(s, skipna=True)
    if kind == "empty" or (dtype == "str" and kind == "string") or (
            dtype == "date" and kind == "date"):
        return None
    if dtype == "str":
        def fits(v: Any) -> bool:
            return isinstance(v, str)
    else:
        def fits(v: Any) -> bool:
            return isinstance(v, dt.date) and not isinstance(v, dt.datetime)
    return _bool(s.notna() & ~s.map(fits, na_action="ignore").fillna(True).astype(bool))


def _describe(s: pd.Series) -> str:
    """The column's dtype; for an object column, also the types of values it holds."""
    if str(s.dtype) != "object":
        return str(s.dtype)
    kinds = sorted({type(v).__name__ for v in s.dropna().head(1000)})
    return f"object holding {', '.join(kinds)}" if kinds else "object"


def _sample(s: pd.Series, bad: np.ndarray) -> list[Any]:
    idx = np.flatnonzero(bad)[:_SAMPLE]
    return [s.iloc[i] for i in idx]
