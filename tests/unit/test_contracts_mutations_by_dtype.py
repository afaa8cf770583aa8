"""Mutation testing of pipelines whose frames hold dates, times, durations, categories and
nullable types: every mutation is either killed or reported as not applicable, never counted
as a failure because it could not be built."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import polars as pl
import pytest

from reliability import Pipeline
from reliability.contracts import Contract, ContractSet
from reliability.contracts.spec import ContractSpec
from reliability.contracts.suite import run_suite
from reliability.contracts.testing import mutation_test

COLUMNS: dict[str, Any] = {
    "id": {"dtype": "int64", "unique": True, "ge": 0},
    "ts": {"dtype": "datetime64[us, UTC]"},
    "naive": {"dtype": "datetime"},
    "wait": {"dtype": "timedelta"},
    "day": {"dtype": "date"},
    "kind": {"dtype": "category", "isin": ["a", "b"]},
    "flag": {"dtype": "bool"},
    "label": {"dtype": "str", "isin": ["x", "y"]},
}
_T0 = dt.datetime(2024, 3, 1, 9, 30)


def _pandas() -> pd.DataFrame:
    return pd.DataFrame({
        "id": [0, 1, 2],
        "ts": pd.Series([_T0] * 3).astype("datetime64[us]").dt.tz_localize("UTC"),
        "naive": pd.Series([_T0] * 3).astype("datetime64[ns]"),
        "wait": pd.to_timedelta([1, 2, 3], unit="s"),
        "day": pd.Series([_T0.date()] * 3, dtype=object),
        "kind": pd.Series(["a", "b", "a"], dtype="category"),
        "flag": [True, False, True],
        "label": ["x", "y", "x"],
    })


def _polars() -> pl.DataFrame:
    return pl.DataFrame({
        "id": [0, 1, 2], "ts": [_T0] * 3, "naive": [_T0] * 3,
        "wait": [dt.timedelta(seconds=s) for s in (1, 2, 3)], "day": [_T0.date()] * 3,
        "kind": ["a", "b", "a"], "flag": [True, False, True], "label": ["x", "y", "x"],
    }, schema_overrides={"ts": pl.Datetime("us", "UTC"), "kind": pl.Categorical})


def _pipeline(frame: Any) -> tuple[Pipeline, ContractSet]:
    p = Pipeline("timed")

    @p.step
    def events() -> Any:
        return frame

    @p.step
    def count(events: Any) -> int:
        return len(events)

    contracts = ContractSet([
        Contract(ContractSpec.model_validate({
            "pipeline": "timed", "step": "events", "direction": "output",
            "schema": {"columns": COLUMNS}})),
        Contract(ContractSpec.model_validate({
            "pipeline": "timed", "step": "count", "direction": "input", "input": "events",
            "schema": {"columns": COLUMNS}})),
    ], pipeline="timed")
    return p, contracts


@pytest.mark.parametrize("make", [_pandas, _polars], ids=["pandas", "polars"])
def test_time_columns_do_not_make_mutation_testing_fail(make: Any) -> None:
    frame = make()
    pipeline, contracts = _pipeline(frame)
    assert all(c.validate(frame).ok for c in contracts)
    report = mutation_test(pipeline, contracts, {"events": frame, "count": 3})
    raised = [o for o in report.outcomes if "raised" in o.detail]
    assert raised == [], raised
    assert report.survivors == [] and report.kill_rate == 1.0
    flips = {o.mutation: o for o in report.outcomes if o.mutation.startswith("dtype_flip")}
    assert {f"dtype_flip:{c}" for c in COLUMNS} == set(flips)
    assert all(o.killed for o in flips.values()), flips


def test_a_mutation_that_cannot_apply_is_skipped_and_said_so() -> None:
    # polars cannot cast an Object column to text: the dtype flip cannot be built
    frame = pl.DataFrame({"id": [0, 1]}).with_columns(
        pl.Series("blob", [object(), object()], dtype=pl.Object))
    p = Pipeline("blobs")

    @p.step
    def blobs() -> Any:
        return frame

    contracts = ContractSet([Contract(ContractSpec.model_validate({
        "pipeline": "blobs", "step": "blobs", "direction": "output",
        "schema": {"columns": {"id": {"dtype": "int64"}, "blob": {"dtype": "object"}}}}))],
        pipeline="blobs")
    report = mutation_test(p, contracts, {"blobs": frame})
    [skipped] = report.skipped
    assert skipped.mutation == "dtype_flip:blob" and not skipped.applied
    assert "does not apply" in skipped.detail
    assert report.survivors == [] and report.kill_rate == 1.0
    result = run_suite(p, contracts, mutations=True, recorded={"blobs": frame})
    [row] = [r for r in result.rows if r.name.startswith("mutations:")]
    assert row.status == "passed"
    assert "not applicable: dtype_flip:blob" in row.detail
