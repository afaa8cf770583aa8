"""Hypothesis strategies that generate frames satisfying a frame contract — for pandas
and for polars (pandera's own strategies are pandas-only, so these are built from our
spec directly).
"""

from __future__ import annotations

import datetime as dt
import math
import random
import string
from decimal import Decimal
from typing import Any

from hypothesis import assume
from hypothesis import strategies as st

from reliability.contracts.dtypes import DType, parse_dtype
from reliability.contracts.spec import ColumnSpec, FrameSpec

__all__ = ["column_values", "frames"]

_INT_LIMIT = 2**31
_FLOAT_LIMIT = 1e9
_BASE_ROWS = 8
_EPOCH = dt.datetime(1970, 1, 1)
_SPAN = dt.timedelta(days=10_000)


def _declared(col: ColumnSpec) -> DType:
    want = parse_dtype(col.dtype)
    assert want is not None  # the spec validated it
    return want


def _kind(col: ColumnSpec) -> str:
    return _declared(col).kind


def _ints(col: ColumnSpec) -> st.SearchStrategy[Any]:
    rng = col.value_range()
    lo = -_INT_LIMIT if rng.lo is None else math.ceil(rng.lo) + (
        1 if not rng.lo_incl and float(rng.lo).is_integer() else 0)
    hi = _INT_LIMIT if rng.hi is None else math.floor(rng.hi) - (
        1 if not rng.hi_incl and float(rng.hi).is_integer() else 0)
    if col.dtype.startswith("uint"):
        lo = max(lo, 0)
    return st.integers(min_value=lo, max_value=hi)


def _floats(col: ColumnSpec) -> st.SearchStrategy[Any]:
    rng = col.value_range()
    return st.floats(
        min_value=-_FLOAT_LIMIT if rng.lo is None else rng.lo,
        max_value=_FLOAT_LIMIT if rng.hi is None else rng.hi,
        exclude_min=rng.lo is not None and not rng.lo_incl,
        exclude_max=rng.hi is not None and not rng.hi_incl,
        allow_nan=False, allow_infinity=False,
        width=32 if col.dtype == "float32" else 64)


def column_values(col: ColumnSpec) -> st.SearchStrategy[Any]:
    """Values one cell of ``col`` may hold (nulls only where the frame can carry them)."""
    if col.isin is not None:
        base: st.SearchStrategy[Any] = st.sampled_from(list(col.isin))
    elif col.equal_to is not None:
        base = st.just(col.equal_to)
    else:
        base = _typed_values(col)
    if col.notin:
        banned = set(col.notin)
        base = base.filter(lambda v: v not in banned)
    if col.nullable and col.dtype.startswith("float"):
        base = st.one_of(st.just(math.nan), base)
    elif col.nullable and col.dtype == "str":
        base = st.one_of(st.none(), base)
    return base


def _typed_values(col: ColumnSpec) -> st.SearchStrategy[Any]:
    kind = _kind(col)
    if kind == "int":
        return _ints(col)
    if kind == "float":
        return _floats(col)
    if kind == "decimal":
        want = parse_dtype(col.dtype)
        assert want is not None and want.precision is not None and want.scale is not None
        top = Decimal(10) ** (want.precision - want.scale) - Decimal(1).scaleb(-want.scale)
        return st.decimals(min_value=-top, max_value=top, places=want.scale,
                           allow_nan=False, allow_infinity=False)
    simple: dict[str, st.SearchStrategy[Any]] = {
        "bool": st.booleans(), "boolean": st.booleans(), "date": st.dates(),
        "datetime": st.datetimes(min_value=_EPOCH, max_value=_EPOCH.replace(year=2200)),
        "timedelta": st.timedeltas(min_value=-_SPAN, max_value=_SPAN)}
    if kind in simple:
        return simple[kind]
    if col.str_matches is not None:
        return st.from_regex(f"^(?:{col.str_matches})", fullmatch=False).filter(
            lambda s: "\x00" not in s)
    lo = int(col.str_length.min_value or 0) if col.str_length else 0
    hi = int(col.str_length.max_value or 12) if col.str_length else 12
    return st.text(alphabet=string.ascii_letters + string.digits, min_size=lo, max_size=hi)


@st.composite
def _frame(draw: st.DrawFn, spec: FrameSpec, library: str, max_rows: int) -> Any:
    """A few generated rows, spread over the frame's length (large frames stay cheap to
    generate and shrink); unique columns get distinct values by construction."""
    lo = spec.min_rows
    hi = lo + max_rows if spec.max_rows is None else max(lo, min(spec.max_rows, lo + max_rows))
    n = draw(st.integers(min_value=lo, max_value=hi))
    k = draw(st.integers(min_value=min(1, n), max_value=min(n, _BASE_ROWS)))
    rnd = random.Random(draw(st.integers(0, 2**16)))
    picks = [i if i < k else rnd.randrange(k) for i in range(n)]
    data: dict[str, list[Any]] = {}
    for name, col in spec.columns.items():
        key = col.unique or (spec.unique is not None and spec.unique == [name])
        if key:
            data[name] = draw(_distinct(col, n))
        else:
            base = draw(st.lists(column_values(col), min_size=k, max_size=k))
            data[name] = [base[i] for i in picks]
    if spec.unique and len(spec.unique) > 1:
        rows = list(zip(*(data[c] for c in spec.unique), strict=True))
        assume(len(set(rows)) == len(rows))
    return _build(spec, data, library)


def _distinct(col: ColumnSpec, n: int) -> st.SearchStrategy[list[Any]]:
    """``n`` distinct valid values: drawn when few, else a spaced sequence."""
    if n <= _BASE_ROWS or col.isin is not None:
        return st.lists(column_values(col), min_size=n, max_size=n, unique=True)
    rng = col.value_range()
    if col.dtype.startswith(("int", "uint")):
        low = math.ceil(rng.lo) + (0 if rng.lo_incl else 1) if rng.lo is not None else 0
        return st.integers(0, 1000).map(lambda off: [low + off + i for i in range(n)])
    if col.dtype.startswith("float"):
        a = rng.lo if rng.lo is not None else 0.0
        b = rng.hi if rng.hi is not None else a + n
        return st.just([a + (b - a) * (i + 1) / (n + 1) for i in range(n)])
    kind = _kind(col)
    if kind in ("datetime", "date", "timedelta"):
        start: Any = {"datetime": _EPOCH, "date": _EPOCH.date(),
                      "timedelta": dt.timedelta(0)}[kind]
        return st.integers(0, 1000).map(
            lambda off: [start + dt.timedelta(days=off + i) for i in range(n)])
    return st.text(string.ascii_letters, min_size=1, max_size=6).map(
        lambda p: [f"{p}{i}" for i in range(n)])


def _build(spec: FrameSpec, data: dict[str, list[Any]], library: str) -> Any:
    if library == "polars":
        import polars as pl

        from reliability.contracts.dtypes import polars_dtype

        schema = {n: polars_dtype(_declared(c)) for n, c in spec.columns.items()}
        return pl.DataFrame(data, schema=schema)
    import pandas as pd

    return pd.DataFrame({n: pd.Series(v, dtype=_pandas_dtype(spec.columns[n]))
                         for n, v in data.items()})


def _pandas_dtype(col: ColumnSpec) -> str:
    want = parse_dtype(col.dtype)
    assert want is not None
    if want.kind in ("datetime", "timedelta") and want.unit is None:
        return f"{want.kind}64[ns]"
    return {"date": "object", "decimal": "object"}.get(want.kind, want.name)


def frames(spec: FrameSpec, library: str = "pandas", max_rows: int = 20
           ) -> st.SearchStrategy[Any]:
    """Frames (pandas or polars) that satisfy ``spec``."""
    return _frame(spec, library, max_rows)
