"""What contract test runs report: every distinct failure Hypothesis finds, each described."""

from __future__ import annotations

import pandas as pd

from reliability import Pipeline
from reliability.contracts import Contract, ContractSet
from reliability.contracts.spec import ContractSpec
from reliability.contracts.suite import run_suite


def test_every_distinct_failure_is_printed() -> None:
    p = Pipeline("fragile")

    @p.step
    def source() -> pd.DataFrame:
        return pd.DataFrame({"x": [0.0]})

    @p.step
    def scale(source: pd.DataFrame) -> float:
        if (source["x"] > 0.5).any():
            raise ValueError("too large to scale")
        if (source["x"] < -0.5).any():
            raise KeyError("negative values have no scale")
        return float(source["x"].sum())

    contracts = ContractSet([Contract(ContractSpec.model_validate({
        "pipeline": "fragile", "step": "scale", "direction": "input", "input": "source",
        "schema": {"columns": {"x": {"dtype": "float64", "ge": -1, "le": 1}}}}))],
        pipeline="fragile")
    result = run_suite(p, contracts, mutations=False, max_examples=60)
    [row] = result.rows
    assert row.status == "failed"
    assert "2 distinct failures:" in row.detail
    assert "1. " in row.detail and "2. " in row.detail
    assert "ValueError" in row.detail and "too large to scale" in row.detail
    assert "KeyError" in row.detail and "negative values have no scale" in row.detail
