"""Contract check cost: 1,000,000 rows x 6 typed columns, pandas and polars.

Ratios against (a) a hand-written vectorised check of the same rules (the floor) and
(b) plain pandera, from one run; plus the per-step hook overhead with trivial contracts
and the import time of ``reliability``. Run: ``python bench/bench_contracts.py``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from reliability.contracts import Contract, ContractHook, ContractSet
from reliability.contracts._pandera import build_schema
from reliability.contracts.spec import ContractSpec
from reliability.pipeline import Pipeline, StepContext

N = 1_000_000
CATS = ["a", "b", "c", "d"]
SPEC = {"pipeline": "bench", "step": "s", "direction": "output", "schema": {"columns": {
    "id": {"dtype": "int64", "unique": True},
    "x": {"dtype": "float64", "in_range": {"min_value": 0, "max_value": 1}},
    "y": {"dtype": "float64", "ge": -5},
    "n": {"dtype": "int64", "in_range": {"min_value": 0, "max_value": 1000}},
    "cat": {"dtype": "str", "isin": CATS},
    "flag": {"dtype": "bool"}}, "strict": True}}
COLS = ["id", "x", "y", "n", "cat", "flag"]
DTYPES_PD = {"id": "int64", "x": "float64", "y": "float64", "n": "int64", "cat": "str",
             "flag": "bool"}


def data() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {"id": np.arange(N, dtype="int64"), "x": rng.random(N),
            "y": rng.normal(0, 1, N).clip(-4, 4), "n": rng.integers(0, 1000, N),
            "cat": rng.choice(CATS, N), "flag": rng.random(N) < 0.5}


def floor_pandas(df: pd.DataFrame) -> bool:
    ok = list(df.columns) == COLS and all(str(df[c].dtype) == d for c, d in DTYPES_PD.items())
    ok = ok and bool(df.notna().all().all()) and df["id"].is_unique
    ok = ok and bool(df["x"].between(0, 1).all()) and bool((df["y"] >= -5).all())
    ok = ok and bool(df["n"].between(0, 1000).all()) and bool(df["cat"].isin(CATS).all())
    return bool(ok)


def floor_polars(df: pl.DataFrame) -> bool:
    schema_ok = df.columns == COLS and df.schema["x"] == pl.Float64
    row = df.select(
        pl.sum_horizontal(pl.all().null_count()).alias("nulls"),
        (pl.col("x").is_nan() | pl.col("y").is_nan()).sum().alias("nan"),
        (pl.len() - pl.col("id").n_unique()).alias("dup"),
        (~pl.col("x").is_between(0, 1)).sum().alias("x"),
        (pl.col("y") < -5).sum().alias("y"),
        (~pl.col("n").is_between(0, 1000)).sum().alias("n"),
        (~pl.col("cat").is_in(CATS)).sum().alias("cat"),
    ).row(0)
    return schema_ok and not any(row)


def best(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_library(name: str, frame: Any, floor: Callable[[Any], bool], repeat: int) -> None:
    contract = Contract(ContractSpec.model_validate(SPEC))
    assert floor(frame) and contract.validate(frame).ok
    schema = build_schema(contract.spec.frame, name)  # type: ignore[arg-type]
    schema.validate(frame)
    t_floor = best(lambda: floor(frame), repeat)
    t_ours = best(lambda: contract.validate(frame), repeat)
    t_pandera = best(lambda: schema.validate(frame), max(2, repeat // 2))
    print(f"{name:7s} floor {t_floor * 1e3:7.1f} ms | ours {t_ours * 1e3:7.1f} ms "
          f"({t_ours / t_floor:.2f}x floor) | pandera {t_pandera * 1e3:7.1f} ms "
          f"({t_pandera / t_floor:.2f}x floor, ours is {t_pandera / t_ours:.1f}x faster)")


def bench_hook() -> None:
    pipe = Pipeline("bench")

    @pipe.step
    def s() -> dict[str, float]:
        return {"v": 1.0}

    cs = ContractSet([Contract(ContractSpec.model_validate({
        "pipeline": "bench", "step": "s", "direction": "output", "kind": "metrics",
        "metrics": {"fields": {"v": {"type": "float"}}}}))])
    hook = ContractHook(cs)
    spec = pipe.steps["s"]
    ctx = StepContext("bench", "r", "s", 1, None, Path("."))
    out = {"v": 1.0}
    n = 20000
    samples = []
    for _ in range(5):
        ctx._emitted.clear()
        t = time.perf_counter()
        for _ in range(n):
            hook.after(ctx, spec, (hook.before(ctx, spec, {}) and out) or out)
        samples.append((time.perf_counter() - t) / n)
        ctx._emitted.clear()
    print(f"hook    before+after per step with a trivial contract: "
          f"{min(samples) * 1e6:.1f} us (target <= 50 us)")


def bench_import() -> None:
    times = []
    for _ in range(5):
        out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import reliability"],
                             capture_output=True, text=True, check=True)
        last = out.stderr.strip().splitlines()[-1]
        times.append(int(last.split("|")[1]) / 1e6)
    print(f"import  reliability: {statistics.median(times) * 1e3:.0f} ms (target <= 150 ms)")


def main() -> None:
    raw = data()
    pdf = pd.DataFrame({c: pd.Series(v, dtype=DTYPES_PD[c]) for c, v in raw.items()})
    bench_library("pandas", pdf, floor_pandas, 5)
    bench_library("polars", pl.DataFrame(raw), floor_polars, 7)
    bench_hook()
    bench_import()


if __name__ == "__main__":
    main()
