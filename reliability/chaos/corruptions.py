"""Generic data corruptions for ``data`` faults: what bad upstream data looks like.

Each corruption takes a frame (pandas or polars), the columns to hit (default: chosen from
the frame), a fraction of rows and a seeded :class:`random.Random`, and returns a new frame;
the input is never modified in place. Non-frame values pass through unchanged except for
``empty`` (an empty value of the same type) and ``duplicates`` on lists.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["CORRUPT", "corrupt"]

Corruption = Callable[[Any, list[str], float, random.Random], Any]


def _is_polars(frame: Any) -> bool:
    return type(frame).__module__.startswith("polars")


def _is_frame(frame: Any) -> bool:
    return hasattr(frame, "columns") and hasattr(frame, "shape")


def _numeric(frame: Any) -> list[str]:
    if _is_polars(frame):
        return [c for c, t in frame.schema.items() if t.is_numeric()]
    import pandas as pd

    return [str(c) for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]


def _rows(n: int, fraction: float, rng: random.Random) -> list[int]:
    k = max(1, round(n * fraction)) if n else 0
    return sorted(rng.sample(range(n), min(k, n)))


def _pick(frame: Any, columns: list[str], rng: random.Random, numeric: bool = False
          ) -> list[str]:
    if columns:
        return columns
    pool = _numeric(frame) if numeric else [str(c) for c in frame.columns]
    return [rng.choice(sorted(pool))] if pool else []


def _set_rows(frame: Any, cols: list[str], rows: list[int], value: Callable[[Any], Any]
              ) -> Any:
    if _is_polars(frame):
        import polars as pl

        mask = pl.Series([i in set(rows) for i in range(frame.height)])
        return frame.with_columns([
            pl.when(mask).then(value(pl.col(c))).otherwise(pl.col(c)).alias(c) for c in cols])
    out = frame.copy()
    for c in cols:
        if value is _null:
            out[c] = out[c].astype("float64") if out[c].dtype.kind in "iub" else out[c]
        out.loc[out.index[rows], c] = value(out[c])
    return out


def _null(col: Any) -> Any:
    return None


def nulls(frame: Any, cols: list[str], fraction: float, rng: random.Random) -> Any:
    """Missing values in ``fraction`` of the rows of the chosen columns."""
    return _set_rows(frame, _pick(frame, cols, rng), _rows(len(frame), fraction, rng), _null)


def out_of_range(frame: Any, cols: list[str], fraction: float, rng: random.Random) -> Any:
    """Numeric values far outside any plausible range (negated and scaled by 1e6)."""
    target = _pick(frame, cols, rng, numeric=True)
    return _set_rows(frame, target, _rows(len(frame), fraction, rng),
                     lambda col: col * -1_000_000 - 1)


def drop_column(frame: Any, cols: list[str], fraction: float, rng: random.Random) -> Any:
    """Schema drift: a column disappears."""
    return frame.drop(_pick(frame, cols, rng)) if _is_polars(frame) else frame.drop(
        columns=_pick(frame, cols, rng))


def rename_column(frame: Any, cols: list[str], fraction: float, rng: random.Random) -> Any:
    """Schema drift: a column is renamed upstream (``x`` -> ``x_v2``)."""
    mapping = {c: f"{c}_v2" for c in _pick(frame, cols, rng)}
    return frame.rename(mapping) if _is_polars(frame) else frame.rename(columns=mapping)


def add_column(frame: Any, cols: list[str], fraction: float, rng: random.Random) -> Any:
    """Schema drift: an unexpected column appears."""
    name = cols[0] if cols else "unexpected_column"
    if _is_polars(frame):
        import polars as pl

        return frame.with_columns(pl.lit("surprise").alias(name))
    return frame.assign(**{name: "surprise"})


def dtype_flip(frame: Any, cols: list[str], fraction: float, rng: random.Random) -> Any:
    """Schema drift: a numeric column arrives as strings."""
    target = _pick(frame, cols, rng, numeric=True)
    if _is_polars(frame):
        import polars as pl

        return frame.with_columns([pl.col(c).cast(pl.Utf8) for c in target])
    return frame.astype(dict.fromkeys(target, "string"))


def duplicates(frame: Any, cols: list[str], fraction: float, rng: random.Random) -> Any:
    """Some rows delivered twice."""
    rows = _rows(len(frame), fraction, rng)
    if _is_polars(frame):
        import polars as pl

        return pl.concat([frame, frame[rows]])
    import pandas as pd

    return pd.concat([frame, frame.iloc[rows]], ignore_index=True)


def empty(frame: Any, cols: list[str], fraction: float, rng: random.Random) -> Any:
    """Nothing arrived: same columns, no rows."""
    return frame.head(0) if _is_frame(frame) else type(frame)()


def late_partition(frame: Any, cols: list[str], fraction: float, rng: random.Random) -> Any:
    """The newest ``fraction`` of the rows has not arrived yet (a late partition)."""
    keep = len(frame) - max(1, round(len(frame) * fraction))
    return frame.head(max(0, keep))


def duplicate_partition(frame: Any, cols: list[str], fraction: float, rng: random.Random
                        ) -> Any:
    """The newest ``fraction`` of the rows was delivered twice (a replayed partition)."""
    n = max(1, round(len(frame) * fraction))
    if _is_polars(frame):
        import polars as pl

        return pl.concat([frame, frame.tail(n)])
    import pandas as pd

    return pd.concat([frame, frame.tail(n)], ignore_index=True)


CORRUPT: dict[str, Corruption] = {
    "nulls": nulls, "out_of_range": out_of_range, "drop_column": drop_column,
    "rename_column": rename_column, "add_column": add_column, "dtype_flip": dtype_flip,
    "duplicates": duplicates, "empty": empty, "late_partition": late_partition,
    "duplicate_partition": duplicate_partition,
}


def corrupt(value: Any, kind: str, columns: Sequence[str] = (), fraction: float = 0.1,
            rng: random.Random | None = None) -> Any:
    """Apply corruption ``kind`` to ``value`` (a frame; lists support empty/duplicates)."""
    rng = rng or random.Random(0)
    if _is_frame(value):
        return CORRUPT[kind](value, list(columns), fraction, rng)
    if kind == "empty" and isinstance(value, list | dict | str | bytes):
        return type(value)()
    if kind in ("duplicates", "duplicate_partition") and isinstance(value, list):
        return value + [value[i] for i in _rows(len(value), fraction, rng)]
    return value
