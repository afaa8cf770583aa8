"""Pipelines the orchestrator adapters run in tests (importable by DAG files and flows)."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pandas as pd
from pydantic import BaseModel

from reliability import Pipeline, Retry, StepContext


class Params(BaseModel):
    rows: int = 50
    bad: bool = False          # extract yields an out-of-range value (breaks its contract)
    hold: str = ""             # this step waits for <signal_dir>/release on its first attempt
    signal_dir: str = ""


small = Pipeline("small", params=Params)


def _hold(ctx: StepContext, params: Params) -> None:
    """On the first attempt of ``params.hold``, mark that it runs and wait to be killed."""
    if ctx.step != params.hold or ctx.attempt != 1 or not params.signal_dir:
        return
    marker = Path(params.signal_dir) / f"{ctx.step}.running"
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(str(os.getpid()))
    tmp.replace(marker)  # watchers never see the marker without its pid
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (Path(params.signal_dir) / "release").exists():
        time.sleep(0.05)


@small.step(retry=Retry(attempts=3, backoff=0))
def extract(ctx: StepContext, params: Params) -> pd.DataFrame:
    _hold(ctx, params)
    x = [i / params.rows for i in range(params.rows)]
    if params.bad:
        x[3] = 7.5
    return pd.DataFrame({"id": pd.array(range(params.rows), dtype="int64"), "x": x,
                         "day": pd.date_range("2026-01-01", periods=params.rows, freq="h",
                                              tz="UTC"),
                         "kind": pd.Categorical(["a", "b"] * (params.rows // 2)
                                                + ["a"] * (params.rows % 2))})


@small.step(retry=Retry(attempts=3, backoff=0))
def transform(ctx: StepContext, params: Params, extract: pd.DataFrame) -> pd.DataFrame:
    _hold(ctx, params)
    return extract.assign(y=extract["x"] * 2)


@small.step(retry=Retry(attempts=3, backoff=0))
def summary(transform: pd.DataFrame) -> dict[str, object]:
    return {"rows": len(transform), "y": round(float(transform["y"].sum()), 9),
            "dtypes": {c: str(t) for c, t in transform.dtypes.items()}}


@small.step(retry=Retry(attempts=3, backoff=0))
def fingerprint(extract: pd.DataFrame) -> bytes:
    return hashlib.sha256(pd.util.hash_pandas_object(extract).values.tobytes()).digest()


daily = Pipeline("daily")
"""Readings of the run's data interval (each run's own data), and their totals."""


@daily.step(retry=Retry(attempts=2, backoff=0))
def readings(ctx: StepContext) -> pd.DataFrame:
    """One reading per hour of the data interval."""
    if ctx.interval is None:
        raise ValueError("daily readings need a data interval")
    hours = pd.date_range(ctx.interval.start, ctx.interval.end, freq="h", inclusive="left")
    return pd.DataFrame({"hour": hours, "value": [h.day * 100 + h.hour for h in hours]})


@daily.step(retry=Retry(attempts=2, backoff=0))
def totals(ctx: StepContext, readings: pd.DataFrame) -> dict[str, object]:
    assert ctx.interval is not None
    return {"rows": len(readings), "sum": int(readings["value"].sum()),
            "first": readings["hour"].iloc[0].isoformat(), "until": ctx.interval.end}


CONTRACT = """\
pipeline: small
step: extract
direction: output
schema:
  strict: false
  columns:
    id: {dtype: int64, unique: true}
    x: {dtype: float64, in_range: {min_value: 0, max_value: 1}}
"""


def contract_dir(root: Path) -> Path:
    """A contracts directory with extract's output contract (x within [0, 1])."""
    d = root / "contracts" / "small"
    d.mkdir(parents=True, exist_ok=True)
    (d / "extract.output.yaml").write_text(CONTRACT)
    return root / "contracts"
