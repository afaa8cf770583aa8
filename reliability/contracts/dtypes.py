"""Declared column dtypes: how a contract spells them and which actual dtypes satisfy them.

A contract declares one of (case as shown; pandas' and polars' own spellings are accepted
and normalised to these)::

    int8 int16 int32 int64 uint8 uint16 uint32 uint64   (Int64, UInt8 ... are the same)
    float32 float64                                     (Float32, Float64 are the same)
    bool        numpy bool (pandas) / Boolean (polars)
    boolean     pandas' nullable boolean / Boolean (polars)
    str         str/string/object-holding-str (pandas) / String (polars)
    object      any object column (pandas) / Object (polars)
    category    category (pandas) / Categorical (polars)
    date        object column of datetime.date (pandas) / Date (polars)
    datetime    naive datetime64 of any unit (pandas) / Datetime('us') (polars)
    datetime64[ns]          naive, exactly this unit (s, ms, us or ns; polars has no s)
    datetime64[ns, UTC]     time zone aware: exactly this unit and zone
    timedelta   timedelta64 of any unit (pandas) / Duration('us') (polars); alias duration
    timedelta64[ns]         exactly this unit
    decimal(10, 2)          polars Decimal(precision, scale); pandas has no decimal dtype

The verdicts follow pandera's on the same frame, except where a declaration is stricter
on purpose: a declared unit is exact on pandas too (pandera ignores the unit of naive
datetimes and of timedeltas there), and ``decimal`` is never satisfied by pandas columns.
"""

from __future__ import annotations

import re
from typing import Any

from reliability._record import record

__all__ = [
    "DTYPE_NAMES",
    "DType",
    "describe_pandas",
    "describe_polars",
    "pandas_accepts",
    "parse_dtype",
    "polars_accepts",
    "polars_dtype",
]

_UNITS = ("s", "ms", "us", "ns")
_INTS = {f"{sign}int{bits}": (sign == "u", bits) for sign in ("", "u") for bits in (8, 16, 32, 64)}
_SIMPLE = {"bool", "boolean", "str", "object", "category", "date"}
_ALIASES = {"int": "int64", "integer": "int64", "float": "float64", "double": "float64",
            "string": "str", "utf8": "str", "string[python]": "str", "string[pyarrow]": "str",
            "categorical": "category", "datetime64": "datetime", "timedelta64": "timedelta",
            "duration": "timedelta", "object_": "object"}
#: the declarable names, for error messages
DTYPE_NAMES = (*_INTS, "float32", "float64", *sorted(_SIMPLE), "datetime",
               "datetime64[UNIT]", "datetime64[UNIT, TZ]", "timedelta", "timedelta64[UNIT]",
               "decimal(P, S)")

_TIME = re.compile(r"^(datetime|timedelta)(?:64)?\[\s*(s|ms|us|ns)\s*(?:,\s*([^\]]+?)\s*)?\]$")
_POLARS_TIME = re.compile(
    r"^(datetime|duration)\(\s*(?:time_unit\s*=\s*)?'?(s|ms|us|ns)'?\s*"
    r"(?:,\s*(?:time_zone\s*=\s*)?'?([^')]+?)'?\s*)?\)$", re.IGNORECASE)
_DECIMAL = re.compile(r"^decimal(?:128)?\(\s*(?:precision\s*=\s*)?(\d+)\s*,\s*"
                      r"(?:scale\s*=\s*)?(\d+)\s*\)$", re.IGNORECASE)


@record(frozen=True, slots=True)
class DType:
    """A declared dtype: ``kind`` plus the parameters that matter for that kind."""

    kind: str  # int | float | bool | boolean | str | object | category | date |
    #            datetime | timedelta | decimal
    bits: int | None = None
    unsigned: bool = False
    unit: str | None = None
    tz: str | None = None
    precision: int | None = None
    scale: int | None = None

    @property
    def name(self) -> str:
        """The canonical spelling (what contracts, diffs and reports show)."""
        if self.kind == "int":
            return f"{'u' if self.unsigned else ''}int{self.bits}"
        if self.kind == "float":
            return f"float{self.bits}"
        if self.kind in ("datetime", "timedelta"):
            if self.unit is None:
                return self.kind
            zone = f", {self.tz}" if self.tz else ""
            return f"{self.kind}64[{self.unit}{zone}]"
        if self.kind == "decimal":
            return f"decimal({self.precision}, {self.scale})"
        return self.kind

    @property
    def family(self) -> str:
        """'number', 'text', 'bool', 'time' or 'object' (which checks apply)."""
        if self.kind in ("int", "float", "decimal"):
            return "number"
        if self.kind in ("str", "category"):
            return "text"
        if self.kind in ("bool", "boolean"):
            return "bool"
        return "object" if self.kind == "object" else "time"


def parse_dtype(text: str) -> DType | None:
    """The :class:`DType` a contract's ``dtype:`` means, or None if it is not one."""
    raw = str(text).strip()
    low = _ALIASES.get(raw.lower(), raw.lower())
    found: DType | None = None
    if low in _INTS:
        found = DType("int", bits=_INTS[low][1], unsigned=_INTS[low][0])
    elif low in ("float32", "float64"):
        found = DType("float", bits=int(low[5:]))
    elif low in _SIMPLE or low in ("datetime", "timedelta"):
        found = DType("bool" if raw == "Boolean" else low)
    elif m := (_TIME.match(low) or _POLARS_TIME.match(raw)):
        kind = "datetime" if m.group(1).lower() == "datetime" else "timedelta"
        tz = None if m.group(3) is None else _zone(raw) or m.group(3)  # keep the zone's case
        found = None if tz is not None and kind == "timedelta" else DType(
            kind, unit=m.group(2), tz=tz)
    elif m := _DECIMAL.match(low):
        found = DType("decimal", precision=int(m.group(1)), scale=int(m.group(2)))
    return found


def _zone(raw: str) -> str | None:
    m = re.search(r",\s*(?:time_zone\s*=\s*)?'?([^'\])]+?)'?\s*[\])]$", raw)
    return m.group(1) if m else None


# -- pandas ---------------------------------------------------------------------------------
def describe_pandas(dtype: Any) -> str:
    return str(dtype)


def _unit_tz(dtype: Any) -> tuple[str | None, str | None]:
    unit = getattr(dtype, "unit", None)
    tz = getattr(dtype, "tz", None)
    if unit is None:  # numpy datetime64/timedelta64
        import numpy as np

        unit = np.datetime_data(dtype)[0]
    return unit, (None if tz is None else str(tz))


def pandas_accepts(want: DType, dtype: Any) -> tuple[bool, str | None]:
    """(dtype acceptable, value kind to check in an object column: 'str', 'date' or None)."""
    name = str(dtype)
    kind = want.kind
    if kind in ("int", "float"):
        base = want.name
        return name in (base, base[0].upper() + base[1:] if kind == "float" or not
                        want.unsigned else f"UInt{want.bits}"), None
    if kind in ("str", "date") and name == "object":
        return True, kind  # an object column: its values are checked
    if kind in ("datetime", "timedelta"):
        return _time_fits(want, dtype, name), None
    accepted = {"str": ("str", "string"), "decimal": ()}.get(kind, (kind,))
    return name in accepted, None  # pandas has no decimal dtype


def _time_fits(want: DType, dtype: Any, name: str) -> bool:
    if not name.startswith(f"{want.kind}64["):
        return False
    unit, tz = _unit_tz(dtype)
    if want.unit is not None and unit != want.unit:
        return False
    return tz == want.tz if want.kind == "datetime" else True


# -- polars ---------------------------------------------------------------------------------
def describe_polars(dtype: Any) -> str:
    return str(dtype)


def polars_dtype(want: DType) -> Any:
    """The one polars dtype that satisfies ``want``."""
    import polars as pl

    kind = want.kind
    if kind == "int":
        return getattr(pl, f"{'UInt' if want.unsigned else 'Int'}{want.bits}")
    if kind == "float":
        return getattr(pl, f"Float{want.bits}")
    simple = {"bool": pl.Boolean, "boolean": pl.Boolean, "str": pl.String,
              "object": pl.Object, "category": pl.Categorical, "date": pl.Date}
    if kind in simple:
        return simple[kind]
    if kind == "datetime":
        return pl.Datetime(want.unit or "us", want.tz)  # type: ignore[arg-type]
    if kind == "timedelta":
        return pl.Duration(want.unit or "us")  # type: ignore[arg-type]
    return pl.Decimal(want.precision, want.scale or 0)


def polars_accepts(want: DType, dtype: Any) -> bool:
    import polars as pl

    if want.unit == "s":
        return False  # polars has no second resolution
    expected = polars_dtype(want)
    if want.kind == "category":
        return bool(dtype == pl.Categorical) and not isinstance(dtype, pl.Enum)
    if want.kind in ("datetime", "timedelta", "decimal"):
        return bool(dtype.__class__ is expected.__class__ and dtype == expected)
    return bool(dtype == expected)
