"""Every dtype a contract can declare, against near-miss actual dtypes, on pandas and polars:
our verdict equals pandera's on the same frame, except the deliberate, stricter differences
listed in ``STRICTER`` (also documented in the README's contracts section)."""

from __future__ import annotations

import datetime as dt
import decimal
import warnings
from collections.abc import Callable
from typing import Any

import pandas as pd
import polars as pl
import pytest

from reliability.contracts.engine import Contract
from reliability.contracts.spec import ContractSpec

DECLARED = [
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "Int8", "Int32", "Int64", "UInt8", "UInt64",
    "float32", "float64", "Float32", "Float64",
    "bool", "boolean", "str", "string", "object", "category", "date",
    "datetime", "datetime64[s]", "datetime64[ms]", "datetime64[us]", "datetime64[ns]",
    "datetime64[ns, UTC]", "datetime64[us, UTC]", "datetime64[ns, Asia/Tokyo]",
    "timedelta", "timedelta64[ns]", "timedelta64[us]", "duration", "decimal(10, 2)",
]

_STAMP = dt.datetime(2020, 1, 1, 12, 30)


def _dt(unit: str, tz: str | None = None) -> pd.Series:
    s = pd.Series([_STAMP, _STAMP]).astype(f"datetime64[{unit}]")
    return s.dt.tz_localize("UTC").dt.tz_convert(tz) if tz else s


PANDAS: dict[str, Callable[[], pd.Series]] = {
    **{t: (lambda t=t: pd.Series([1, 2], dtype=t)) for t in (
        "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
        "Int8", "Int32", "Int64", "UInt8", "UInt64", "float32", "float64", "Float32",
        "Float64")},
    "bool": lambda: pd.Series([True, False]),
    "boolean": lambda: pd.Series([True, False], dtype="boolean"),
    "str (default)": lambda: pd.Series(["a", "b"]),
    "string[python]": lambda: pd.Series(["a", "b"], dtype="string[python]"),
    "object of str": lambda: pd.Series(["a", "b"], dtype=object),
    "object of str and int": lambda: pd.Series(["a", 1], dtype=object),
    "object of date": lambda: pd.Series([dt.date(2020, 1, 1)] * 2, dtype=object),
    "object of datetime": lambda: pd.Series([_STAMP] * 2, dtype=object),
    "object of Decimal": lambda: pd.Series([decimal.Decimal("1.50")] * 2, dtype=object),
    "category": lambda: pd.Series(["a", "b"], dtype="category"),
    **{f"datetime64[{u}]": (lambda u=u: _dt(u)) for u in ("s", "ms", "us", "ns")},
    "datetime64[ns, UTC]": lambda: _dt("ns", "UTC"),
    "datetime64[us, UTC]": lambda: _dt("us", "UTC"),
    "datetime64[ns, Asia/Tokyo]": lambda: _dt("ns", "Asia/Tokyo"),
    "datetime64[us, Asia/Tokyo]": lambda: _dt("us", "Asia/Tokyo"),
    **{f"timedelta64[{u}]": (lambda u=u: pd.Series(pd.to_timedelta([1, 2], unit="s"))
                             .astype(f"timedelta64[{u}]")) for u in ("s", "us", "ns")},
}

POLARS: dict[str, Callable[[], pl.Series]] = {
    **{t: (lambda t=t: pl.Series([1, 2], dtype=getattr(pl, t))) for t in (
        "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64",
        "Float32", "Float64")},
    "Boolean": lambda: pl.Series([True, False]),
    "String": lambda: pl.Series(["a", "b"]),
    "Categorical": lambda: pl.Series(["a", "b"], dtype=pl.Categorical),
    "Enum": lambda: pl.Series(["a", "b"], dtype=pl.Enum(["a", "b"])),
    "Object": lambda: pl.Series([object(), object()], dtype=pl.Object),
    "Date": lambda: pl.Series([dt.date(2020, 1, 1)] * 2),
    **{f"Datetime({u})": (lambda u=u: pl.Series([_STAMP] * 2).cast(pl.Datetime(u)))
       for u in ("ms", "us", "ns")},
    **{f"Datetime({u}, {z})": (lambda u=u, z=z: pl.Series([_STAMP] * 2)
                               .cast(pl.Datetime(u, "UTC")).dt.convert_time_zone(z))
       for u in ("us", "ns") for z in ("UTC", "Asia/Tokyo")},
    **{f"Duration({u})": (lambda u=u: pl.Series([dt.timedelta(1)] * 2).cast(pl.Duration(u)))
       for u in ("ms", "us", "ns")},
    "Decimal(10, 2)": lambda: pl.Series([decimal.Decimal("1.50")] * 2).cast(pl.Decimal(10, 2)),
    "Decimal(12, 2)": lambda: pl.Series([decimal.Decimal("1.50")] * 2).cast(pl.Decimal(12, 2)),
}

# How each declaration is written for pandera: pandas takes the declaration itself (two
# spellings it lacks are mapped); polars takes the polars dtype the declaration names.
PANDERA_PANDAS = {"duration": "timedelta", "decimal(10, 2)": "decimal"}


def _pandera_polars(declared: str) -> Any:
    low = declared.lower()
    if low.startswith(("int", "uint", "float")):
        return getattr(pl, declared[0].upper() + declared[1:] if declared[0] in "if"
                       else "UInt" + declared[4:]) if declared[0].islower() else \
            getattr(pl, declared)
    table: dict[str, Any] = {
        "bool": pl.Boolean, "boolean": pl.Boolean, "str": pl.String, "string": pl.String,
        "object": pl.Object, "category": pl.Categorical, "date": pl.Date,
        "datetime": pl.Datetime, "timedelta": pl.Duration, "duration": pl.Duration,
        "decimal(10, 2)": pl.Decimal(10, 2),
    }
    if declared in table:
        return table[declared]
    unit = declared[declared.index("[") + 1:].split(",", maxsplit=1)[0].strip(" ]")
    if declared.startswith("timedelta"):
        return pl.Duration(unit)  # type: ignore[arg-type]
    zone = declared.split(",")[1].strip(" ]") if "," in declared else None
    return pl.Datetime(unit, zone)  # type: ignore[arg-type]


#: (library, declared, actual) -> why we reject what pandera accepts. Only stricter
#: differences are allowed: a declared unit is exact (pandera's pandas engine ignores the
#: unit of naive datetimes and of timedeltas).
_EXACT_UNIT = ("a declared unit is exact; pandera's pandas engine ignores the unit of "
               "naive datetime64 and timedelta64 columns")
STRICTER: dict[tuple[str, str, str], str] = {
    **{("pandas", f"datetime64[{d}]", f"datetime64[{a}]"): _EXACT_UNIT
       for d in ("s", "ms", "us", "ns") for a in ("s", "ms", "us", "ns") if d != a},
    **{("pandas", f"timedelta64[{d}]", f"timedelta64[{a}]"): _EXACT_UNIT
       for d in ("us", "ns") for a in ("s", "us", "ns") if d != a},
}


def _ours(declared: str, frame: Any) -> bool:
    contract = Contract(ContractSpec.model_validate({
        "pipeline": "p", "step": "s", "direction": "output",
        "schema": {"columns": {"c": {"dtype": declared}}}}))
    return contract.validate(frame, detailed=False).ok


def _pandera(lib: str, declared: str, frame: Any) -> bool:
    import pandera.errors as pe

    if lib == "pandas":
        import pandera.pandas as pa

        schema = pa.DataFrameSchema({"c": pa.Column(PANDERA_PANDAS.get(declared, declared))})
    elif "[s" in declared:
        return False  # polars has no second resolution: no polars dtype to declare
    else:
        import pandera.polars as pap

        schema = pap.DataFrameSchema({"c": pap.Column(_pandera_polars(declared))})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            schema.validate(frame)
        except (pe.SchemaError, pe.SchemaErrors):
            return False
    return True


@pytest.mark.parametrize("lib", ["pandas", "polars"])
@pytest.mark.parametrize("declared", DECLARED)
def test_dtype_verdicts_equal_pandera_or_are_documented_as_stricter(lib: str,
                                                                     declared: str) -> None:
    actuals = PANDAS if lib == "pandas" else POLARS
    wrong = []
    for actual, make in actuals.items():
        column = make()
        frame = pd.DataFrame({"c": column}) if lib == "pandas" else pl.DataFrame({"c": column})
        ours, theirs = _ours(declared, frame), _pandera(lib, declared, frame)
        stricter = STRICTER.get((lib, declared, actual))
        if stricter is not None:
            if not (theirs and not ours):
                wrong.append(f"{actual}: listed as stricter, but ours={ours} pandera={theirs}")
        elif ours != theirs:
            wrong.append(f"{actual}: ours={'accept' if ours else 'reject'}, "
                         f"pandera={'accept' if theirs else 'reject'}")
    assert not wrong, f"{lib} column declared {declared!r}:\n" + "\n".join(wrong)


def test_the_reported_datetime_case() -> None:
    """A datetime64[us, UTC] column fails contracts declaring datetime64[ns] or
    datetime64[ns, Asia/Tokyo], naming the column and both types."""
    frame = pd.DataFrame({"ts": _dt("us", "UTC")})
    for declared in ("datetime64[ns]", "datetime64[ns, Asia/Tokyo]"):
        contract = Contract(ContractSpec.model_validate({
            "pipeline": "p", "step": "s", "direction": "output",
            "schema": {"columns": {"ts": {"dtype": declared}}}}))
        report = contract.validate(frame)
        assert not report.ok
        assert f"ts: dtype mismatch: declared {declared}, got datetime64[us, UTC]" in \
            report.summary()


@pytest.mark.parametrize("lib", ["pandas", "polars"])
@pytest.mark.parametrize("detailed", [False, True])
def test_a_range_check_on_strings_is_a_dtype_mismatch(lib: str, detailed: bool) -> None:
    contract = Contract(ContractSpec.model_validate({
        "pipeline": "p", "step": "s", "direction": "output",
        "schema": {"columns": {"x": {"dtype": "float64", "ge": 0.0, "le": 9.0}}}}))
    frame = (pd.DataFrame({"x": ["1.5", "x"]}) if lib == "pandas"
             else pl.DataFrame({"x": ["1.5", "x"]}))
    report = contract.validate(frame, detailed=detailed)
    assert not report.ok
    [failure] = report.failures
    assert failure["column"] == "x" and failure["check"] == "dtype('float64')"
    assert failure["actual"] == ("str" if lib == "pandas" else "String")
    assert "TypeError" not in repr(report.failures) + report.summary()
    mixed = pd.DataFrame({"x": pd.Series([1.5, "x"], dtype=object)})
    summary = contract.validate(mixed, detailed=detailed).summary()
    assert "x: dtype mismatch: declared float64, got object holding float, str" in summary
    assert "TypeError" not in summary
