"""Corruptions derived from contract rules, for mutation testing and data-fault chaos.

Every rule of a contract yields the corruption that should break it: a null where nulls
are forbidden, NaN/inf in a float column, a value just outside the range or the allowed
set, a duplicated key, a flipped dtype, a dropped or an extra column, an empty frame, a
metric below its quality gate, a model that lost a method or predicts unknown labels, an
empty file. :meth:`Mutation.apply` returns a corrupted copy (pandas or polars, eager or
lazy) and never touches its input. A contract that lets a mutation through is too weak.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reliability._record import record
from reliability.contracts.engine import Contract, frame_library
from reliability.contracts.spec import ColumnSpec, FrameSpec, dtype_family

__all__ = ["Mutation", "derive_mutations"]

EXTRA_COLUMN = "__unexpected__"


@record(frozen=True, slots=True)
class Mutation:
    """A named corruption of the value a contract guards; ``rule`` is what it breaks."""

    name: str
    rule: str
    contract: str
    fn: Callable[[Any], Any]

    def apply(self, value: Any) -> Any:
        return self.fn(value)


def derive_mutations(contract: Contract) -> list[Mutation]:
    """One mutation per rule of ``contract`` (see the module docstring)."""
    spec = contract.spec
    pairs: list[tuple[str, str, Callable[[Any], Any]]] = []
    if spec.frame is not None:
        pairs = _frame_mutations(spec.frame)
    elif spec.kind == "metrics":
        pairs = _metric_mutations(contract)
    elif spec.kind == "model" and spec.model is not None:
        pairs = [(f"drop_method:{m}", f"has_method({m})", _hollow) for m in spec.model.methods]
        if spec.model.predictions is not None and spec.model.probe:
            pairs += _prediction_mutations(spec.model.predictions)
    elif spec.kind == "file" and spec.file is not None:
        pairs = [("missing_file", "file_exists", lambda p: Path(str(p) + ".missing"))]
        if spec.file.min_bytes >= 1:
            pairs.append(("empty_file", f"min_bytes({spec.file.min_bytes})", _empty_file))
        if spec.file.suffix:
            pairs.append(("wrong_suffix", f"suffix({spec.file.suffix})", _rename_file))
    return [Mutation(name, rule, contract.name, fn) for name, rule, fn in pairs]


# -- frames ------------------------------------------------------------------------------
def _frame_mutations(frame: FrameSpec) -> list[tuple[str, str, Callable[[Any], Any]]]:
    out: list[tuple[str, str, Callable[[Any], Any]]] = []
    for name, col in frame.columns.items():
        out.extend((f"{kind}:{name}", rule, fn) for kind, rule, fn in _column_mutations(name, col))
    if frame.strict is True:
        out.append((f"extra_column:{EXTRA_COLUMN}", "strict", _extra_column))
    if frame.min_rows >= 1:
        out.append(("empty_frame", f"min_rows({frame.min_rows})", _empty))
    if frame.unique:
        out.append((f"duplicate_row:{','.join(frame.unique)}", "unique", _duplicate_row))
    return out


def _column_mutations(name: str, col: ColumnSpec) -> list[tuple[str, str, Callable[[Any], Any]]]:
    out: list[tuple[str, str, Callable[[Any], Any]]] = []
    is_float = col.dtype.startswith("float")
    is_int = col.dtype.startswith(("int", "uint"))
    if not col.nullable:
        out.append(("null", "nullable=false", lambda f: _set(f, name, None)))
        if is_float:
            out.append(("nan", "nullable=false", lambda f: _set(f, name, math.nan)))
    rng = col.value_range()
    if rng.hi is not None and (is_float or is_int):
        hi = _step_out(rng.hi, rng.hi_incl, +1, is_int)
        out.append(("above_range", f"range {rng.text()}", lambda f: _set(f, name, hi)))
        if is_float:
            out.append(("inf", f"range {rng.text()}", lambda f: _set(f, name, math.inf)))
    if rng.lo is not None and (is_float or is_int):
        lo = _step_out(rng.lo, rng.lo_incl, -1, is_int)
        out.append(("below_range", f"range {rng.text()}", lambda f: _set(f, name, lo)))
        if is_float and rng.hi is None:
            out.append(("-inf", f"range {rng.text()}", lambda f: _set(f, name, -math.inf)))
    if col.isin is not None and col.dtype != "bool":
        bad = _outside(col.isin, col.dtype)
        out.append(("outside_set", f"isin({col.isin})", lambda f: _set(f, name, bad)))
    if col.notin:
        banned = col.notin[0]
        out.append(("banned_value", f"notin({col.notin})", lambda f: _set(f, name, banned)))
    if col.unique:
        out.append(("duplicate_key", "unique", lambda f: _duplicate(f, name)))
    out.append(("dtype_flip", f"dtype={col.dtype}", lambda f: _flip(f, name, col.dtype)))
    if col.required:
        out.append(("dropped_column", "required", lambda f: f.drop(columns=[name])
                    if frame_library(f) == "pandas" else f.drop(name)))
    return out


def _step_out(bound: float, inclusive: bool, sign: int, is_int: bool) -> float | int:
    if is_int:
        edge = math.floor(bound) if sign > 0 else math.ceil(bound)
        return int(edge + sign if inclusive or edge != bound else edge)
    if not inclusive:
        return bound
    return bound + sign * max(1.0, abs(bound) * 0.5)


def _outside(allowed: list[Any], dtype: str) -> Any:
    if dtype == "str" or any(isinstance(v, str) for v in allowed):
        return "__not_allowed__"
    return max(v for v in allowed if isinstance(v, int | float)) + 1


def _set(frame: Any, col: str, value: Any) -> Any:
    """A copy of ``frame`` with ``value`` in the first row of ``col``."""
    if frame_library(frame) == "polars":
        import polars as pl

        lit = pl.lit(value) if value is not None else pl.lit(None)
        return frame.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(lit)
                                  .otherwise(pl.col(col)).alias(col))
    df = frame.copy()
    s = df[col].copy()
    try:
        s.iloc[0] = value
    except (TypeError, ValueError):
        s = s.astype("float64" if isinstance(value, float) else object)
        s.iloc[0] = value
    df[col] = s
    return df


def _duplicate(frame: Any, col: str) -> Any:
    if frame_library(frame) == "polars":
        import polars as pl

        return frame.with_columns(pl.when(pl.int_range(pl.len()) == 1)
                                  .then(pl.col(col).first()).otherwise(pl.col(col)).alias(col))
    df = frame.copy()
    s = df[col].copy()
    s.iloc[1] = s.iloc[0]
    df[col] = s
    return df


def _flip(frame: Any, col: str, dtype: str) -> Any:
    """The column as another type: strings and categories become integers, floats become
    strings, other numbers floats, and dates, times and bools strings (integers in polars,
    which cannot cast them to text)."""
    family = dtype_family(dtype)
    to = ("int" if family == "text" else "str" if dtype.startswith("float") or
          family != "number" else "float")
    if frame_library(frame) == "polars":
        import polars as pl

        if to == "int":
            return frame.with_columns(pl.int_range(pl.len()).alias(col))
        if to == "str" and family in ("time", "bool"):  # polars casts these to numbers only
            return frame.with_columns(pl.col(col).cast(pl.Int64))
        return frame.with_columns(pl.col(col).cast(pl.String if to == "str" else pl.Float64))
    df = frame.copy()
    if to == "int":
        df[col] = range(len(df))
    else:
        df[col] = df[col].astype("str" if to == "str" else "float64")
    return df


def _extra_column(frame: Any) -> Any:
    if frame_library(frame) == "polars":
        import polars as pl

        return frame.with_columns(pl.lit(0).alias(EXTRA_COLUMN))
    df = frame.copy()
    df[EXTRA_COLUMN] = 0
    return df


def _empty(frame: Any) -> Any:
    return frame.head(0) if frame_library(frame) == "polars" else frame.iloc[0:0].copy()


def _duplicate_row(frame: Any) -> Any:
    if frame_library(frame) == "polars":
        import polars as pl

        return pl.concat([frame, frame.head(1)])
    import pandas as pd

    return pd.concat([frame, frame.iloc[:1]], ignore_index=True)


# -- metrics, models, files ----------------------------------------------------------------
def _metric_mutations(contract: Contract) -> list[tuple[str, str, Callable[[Any], Any]]]:
    spec = contract.spec
    out: list[tuple[str, str, Callable[[Any], Any]]] = []

    def put(key: str, value: Any) -> Callable[[Any], Any]:
        return lambda d: {**d, key: value}

    for gate in spec.gates:
        bad = gate.min - 0.01 if gate.min is not None else (gate.max or 0) + 0.01
        out.append((f"below_gate:{gate.metric}", f"quality_gate({gate.metric})",
                    put(gate.metric, bad)))
    fields = spec.metrics.fields if spec.metrics else {}
    for key, field in fields.items():
        out.append((f"missing_metric:{key}", "required", _without(key)))
        if not field.nullable:
            out.append((f"null:{key}", "nullable=false", put(key, None)))
        if field.min is not None:
            out.append((f"below_range:{key}", f"min {field.min}", put(key, field.min - 1)))
        if field.max is not None:
            out.append((f"above_range:{key}", f"max {field.max}", put(key, field.max + 1)))
        out.append((f"dtype_flip:{key}", f"type={field.type}", put(key, "not-a-number")))
    if spec.metrics is not None and spec.metrics.strict:
        out.append((f"extra_column:{EXTRA_COLUMN}", "strict", put(EXTRA_COLUMN, 0)))
    return out


def _without(key: str) -> Callable[[Any], Any]:
    return lambda d: {n: v for n, v in d.items() if n != key}


class _Hollow:
    """A model that lost its methods."""


def _hollow(model: Any) -> Any:
    return _Hollow()


class _Relabel:
    """Wraps a model so its predictions are corrupted by ``how``."""

    def __init__(self, model: Any, how: str) -> None:
        self.model = model
        self.how = how

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def predict(self, x: Any) -> Any:
        import numpy as np

        y = np.asarray(self.model.predict(x))
        if self.how == "outside_set":
            return y + 1000
        if self.how == "dtype_flip":
            return y.astype("float64") + 0.5
        return y[:-1]


def _prediction_mutations(col: ColumnSpec) -> list[tuple[str, str, Callable[[Any], Any]]]:
    out: list[tuple[str, str, Callable[[Any], Any]]] = [
        ("predictions:dtype_flip", f"dtype={col.dtype}", lambda m: _Relabel(m, "dtype_flip")),
        ("predictions:missing_rows", "prediction_rows", lambda m: _Relabel(m, "short")),
    ]
    if col.isin is not None or col.value_range().bounded:
        out.append(("predictions:outside_set", "isin/range", lambda m: _Relabel(m, "outside_set")))
    return out


def _empty_file(path: Any) -> Path:
    p = Path(path)
    dest = p.with_name(f"empty.{p.name}")
    dest.write_bytes(b"")
    return dest


def _rename_file(path: Any) -> Path:
    p = Path(path)
    dest = p.with_name(p.name + ".renamed")
    shutil.copyfile(p, dest)
    return dest
