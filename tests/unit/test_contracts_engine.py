"""The fused validators (pandas and polars): strict defaults, failures as data."""

from __future__ import annotations

import math

import pandas as pd
import polars as pl
import pytest

from reliability.contracts import Contract
from reliability.contracts.checks import drift_statistic
from reliability.contracts.spec import ContractSpec
from reliability.errors import ContractViolation


def _contract(**extra: object) -> Contract:
    spec = {"pipeline": "p", "step": "s", "direction": "output", "schema": {"columns": {
        "id": {"dtype": "int64", "unique": True},
        "x": {"dtype": "float64", "in_range": {"min_value": 0, "max_value": 1}},
        "c": {"dtype": "str", "isin": ["a", "b"]}}}, **extra}
    return Contract(ContractSpec.model_validate(spec))


def _pd() -> pd.DataFrame:
    return pd.DataFrame({"id": [1, 2, 3], "x": [0.0, 0.5, 1.0], "c": ["a", "b", "a"]})


def _to_pl(df: pd.DataFrame) -> pl.DataFrame:
    return pl.DataFrame({c: df[c].tolist() for c in df.columns})


def _checks(report: object) -> set[tuple[object, str]]:
    return {(f["column"], f["check"].split("(")[0].split("[")[0])
            for f in report.failures}  # type: ignore[attr-defined]


@pytest.mark.parametrize("lib", ["pandas", "polars", "lazy"])
def test_valid_frame_passes(lib: str) -> None:
    frame = _pd() if lib == "pandas" else _to_pl(_pd())
    if lib == "lazy":
        frame = frame.lazy()
    report = _contract().validate(frame)
    assert report.ok and report.rows == 3 and report.failures == []


@pytest.mark.parametrize("lib", ["pandas", "polars", "lazy"])
def test_every_failure_reported_with_cases(lib: str) -> None:
    df = pd.DataFrame({"id": [1, 1, 3], "x": [0.2, math.nan, 7.0], "c": ["a", "z", "b"],
                       "extra": [0, 0, 0]})
    frame = df if lib == "pandas" else _to_pl(df)
    if lib == "lazy":
        frame = frame.lazy()  # LazyFrames are validated for data, not schema only
    report = _contract().validate(frame)
    assert not report.ok
    found = _checks(report)
    assert ("x", "not_nullable") in found  # NaN is not null in polars, still rejected
    assert ("c", "isin") in found and ("id", "field_uniqueness") in found
    assert any(col == "x" and chk in {"in_range", "range"} for col, chk in found)
    assert any(f["check"] == "column_in_schema" for f in report.failures)
    x_range = [f for f in report.failures if f["column"] == "x" and "range" in f["check"]]
    assert "7.0" in [str(v) for v in x_range[0]["failure_cases"]]


def test_nan_fails_range_on_non_nullable_polars_fast_path() -> None:
    frame = pl.DataFrame({"id": [1, 2], "x": [float("nan"), 0.5], "c": ["a", "b"]})
    report = _contract().validate(frame, detailed=False)
    assert {f["check"].split("[")[0] for f in report.failures if f["column"] == "x"} == {
        "not_nullable", "in_range"}


def test_dtype_mismatch_and_missing_column_and_empty_frame() -> None:
    df = pd.DataFrame({"id": [1.5], "c": ["a"]})
    report = _contract().validate(df, detailed=False)
    assert ("id", "dtype") in _checks(report)
    assert ("x", "column_in_dataframe") in _checks(report)
    empty = _contract().validate(_pd().iloc[0:0], detailed=False)
    assert any(f["check"] == "min_rows(1)" for f in empty.failures)


def test_enforce_raises_violation_with_data() -> None:
    with pytest.raises(ContractViolation) as info:
        _contract().enforce(_pd().assign(x=[0.1, 2.0, 0.3]))
    exc = info.value
    assert exc.contract == "p.s.output" and exc.direction == "output" and exc.step == "s"
    assert exc.failures[0]["failure_count"] == 1 and "Fix:" in str(exc)


def test_backend_and_kind_mismatch() -> None:
    assert not _contract(backend="polars").validate(_pd()).ok
    assert not _contract().validate({"not": "a frame"}).ok


def test_metrics_gates() -> None:
    spec = ContractSpec.model_validate({
        "pipeline": "p", "step": "e", "direction": "output", "kind": "metrics",
        "metrics": {"fields": {"accuracy": {"type": "float", "min": 0, "max": 1}}},
        "gates": [{"metric": "accuracy", "min": 0.9}]})
    c = Contract(spec)
    assert c.validate({"accuracy": 0.95}).ok
    low = c.validate({"accuracy": 0.5})
    assert [f["check"] for f in low.failures] == ["quality_gate(accuracy >= 0.9)"]
    assert low.failures[0]["failure_cases"] == [0.5]
    assert not c.validate({"accuracy": 0.95, "other": 1}).ok  # strict keys


def test_drift_psi_and_ks() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 2000), rng.normal(0, 1, 2000)
    assert drift_statistic("psi", a, b) < 0.05 and drift_statistic("ks", a, b) < 0.06
    shifted = b + 2
    assert drift_statistic("psi", a, shifted) > 1 and drift_statistic("ks", a, shifted) > 0.5
    spec = ContractSpec.model_validate({
        "pipeline": "p", "step": "s", "direction": "output",
        "schema": {"columns": {"v": {"dtype": "float64"}, "split": {"dtype": "str"}}},
        "drift": [{"columns": ["v"], "method": "ks", "threshold": 0.2,
                   "split": {"column": "split", "reference": "train", "current": "new"}}]})
    frame = pd.DataFrame({"v": np.concatenate([a, shifted]),
                          "split": ["train"] * 2000 + ["new"] * 2000})
    report = Contract(spec).validate(frame)
    assert [f["check"] for f in report.failures] == ["drift_ks(<= 0.2)"]
    ok = frame.assign(v=np.concatenate([a, b]))
    assert Contract(spec).validate(ok).ok
    assert Contract(spec).validate(_to_pl(ok)).ok
