"""Checks for the ML kinds of contract: metrics and quality gates, models and their
predictions, files, and distribution drift (PSI or Kolmogorov-Smirnov)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reliability.contracts.findings import Finding
from reliability.contracts.spec import DriftSpec, FileSpec, GateSpec, MetricsSpec, ModelSpec

__all__ = ["check_drift", "check_file", "check_gates", "check_metrics", "check_model",
           "drift_statistic"]

_PY_TYPES: dict[str, tuple[type, ...]] = {"float": (numbers.Real,), "int": (numbers.Integral,),
                                          "bool": (bool,), "str": (str,)}


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool) or (type(v).__module__ == "numpy"
                                   and type(v).__name__ in {"bool", "bool_"})


def _number(v: Any) -> bool:
    """A real number (numpy scalars included), not a bool."""
    return isinstance(v, numbers.Real) and not _is_bool(v)


def check_metrics(spec: MetricsSpec, value: Any) -> list[Finding]:
    if not isinstance(value, Mapping):
        return [Finding(None, "kind(metrics)", 1, [type(value).__name__])]
    out: list[Finding] = []
    for key, field in spec.fields.items():
        if key not in value:
            out.append(Finding(key, "column_in_dataframe", 1, [key]))
            continue
        v = value[key]
        if v is None or (_number(v) and math.isnan(float(v))):
            if not field.nullable:
                out.append(Finding(key, "not_nullable", 1, [v]))
            continue
        types = _PY_TYPES[field.type]
        ok = _is_bool(v) if field.type == "bool" else isinstance(v, types) and not _is_bool(v)
        if not ok:
            out.append(Finding(key, f"dtype('{field.type}')", 1, [type(v).__name__]))
            continue
        if _number(v) and not _within(float(v), field.min, field.max):
            out.append(Finding(key, f"in_range[{field.min}, {field.max}]", 1, [v]))
    if spec.strict:
        extra = [k for k in value if k not in spec.fields]
        if extra:
            out.append(Finding(None, "column_in_schema", len(extra), extra[:5]))
    return out


def _within(v: float, lo: float | None, hi: float | None) -> bool:
    return (lo is None or v >= lo) and (hi is None or v <= hi)


def check_gates(gates: list[GateSpec], value: Any) -> list[Finding]:
    out: list[Finding] = []
    if not isinstance(value, Mapping):
        return [Finding(None, "kind(metrics)", 1, [type(value).__name__])] if gates else []
    for gate in gates:
        v: Any = value.get(gate.metric)
        if _number(v) and not math.isnan(float(v)) and _within(float(v), gate.min, gate.max):
            continue
        bound = " and ".join(f"{op} {b}" for op, b in ((">=", gate.min), ("<=", gate.max))
                             if b is not None)
        out.append(Finding(gate.metric, f"quality_gate({gate.metric} {bound})", 1, [v]))
    return out


def check_model(spec: ModelSpec, value: Any, inputs: Mapping[str, Any],
                predictions_check: Any) -> list[Finding]:
    """Methods present; predictions on the probe input satisfy the predictions column."""
    out = [Finding(None, f"has_method({m})", 1, [type(value).__name__])
           for m in spec.methods if not callable(getattr(value, m, None))]
    if out or spec.probe is None or spec.predictions is None:
        return out
    probe = inputs.get(spec.probe)
    if probe is None:
        return out
    try:
        features = probe[spec.features] if spec.features else probe
        matrix = features.to_numpy()
    except Exception as exc:
        return [Finding(None, "probe_features", 1, [f"{type(exc).__name__}: {exc}"])]
    try:
        predicted = value.predict(matrix)
    except Exception as exc:
        return [Finding(None, "predict", 1, [f"{type(exc).__name__}: {exc}"])]
    if len(predicted) != len(matrix):
        out.append(Finding("prediction", "prediction_rows", 1, [len(predicted), len(matrix)]))
    out.extend(predictions_check(predicted))
    return out


def check_file(spec: FileSpec, value: Any) -> list[Finding]:
    if not isinstance(value, str | Path):
        return [Finding(None, "kind(file)", 1, [type(value).__name__])]
    p = Path(value)
    if not p.is_file():
        return [Finding(None, "file_exists", 1, [str(p)])]
    out: list[Finding] = []
    if spec.suffix and not p.name.endswith(spec.suffix):
        out.append(Finding(None, f"suffix({spec.suffix})", 1, [p.name]))
    size = p.stat().st_size
    if size < spec.min_bytes or (spec.max_bytes is not None and size > spec.max_bytes):
        out.append(Finding(None, f"size_bytes[{spec.min_bytes}, {spec.max_bytes}]", 1, [size]))
    return out


def drift_statistic(method: str, reference: Any, current: Any, bins: int = 10) -> float:
    """PSI over reference-quantile bins, or the two-sample KS statistic."""
    import numpy as np

    ref = np.asarray(reference, dtype="float64")
    cur = np.asarray(current, dtype="float64")
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    if ref.size == 0 or cur.size == 0:
        return math.inf
    if method == "ks":
        grid = np.sort(np.concatenate([ref, cur]))
        cdf_r = np.searchsorted(np.sort(ref), grid, side="right") / ref.size
        cdf_c = np.searchsorted(np.sort(cur), grid, side="right") / cur.size
        return float(np.max(np.abs(cdf_r - cdf_c)))
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)))
    edges[0], edges[-1] = -np.inf, np.inf
    eps = 1e-4
    r = np.histogram(ref, edges)[0] / ref.size + eps
    c = np.histogram(cur, edges)[0] / cur.size + eps
    return float(np.sum((c - r) * np.log(c / r)))


def _rows(frame: Any, where: tuple[str, Any] | None) -> Any:
    """The rows of ``frame`` where column ``where[0]`` equals ``where[1]`` (all if None)."""
    if where is None:
        return frame
    if type(frame).__module__.startswith("polars"):
        import polars as pl

        return frame.lazy().filter(pl.col(where[0]) == where[1]).collect()
    return frame[frame[where[0]] == where[1]]


def _column(rows: Any, name: str) -> Any:
    if type(rows).__module__.startswith("polars"):
        import polars as pl

        return rows.lazy().select(pl.col(name).cast(pl.Float64)).collect().to_series() \
            .to_numpy()
    return rows[name].to_numpy(dtype="float64", na_value=float("nan"))


def check_drift(specs: list[DriftSpec], frame: Any, baselines: Mapping[str, Any]) -> list[Finding]:
    out: list[Finding] = []
    for spec in specs:
        try:
            if spec.split is not None:
                ref_rows = _rows(frame, (spec.split.column, spec.split.reference))
                cur_rows = _rows(frame, (spec.split.column, spec.split.current))
            else:
                ref_rows, cur_rows = baselines[str(spec.baseline)], frame
        except Exception as exc:
            out.extend(Finding(col, f"drift_{spec.method}", 1, [f"{type(exc).__name__}"])
                       for col in spec.columns)
            continue
        for col in spec.columns:
            try:
                ref, cur = _column(ref_rows, col), _column(cur_rows, col)
            except Exception as exc:
                out.append(Finding(col, f"drift_{spec.method}", 1, [f"{type(exc).__name__}"]))
                continue
            stat = drift_statistic(spec.method, ref, cur, spec.bins)
            if not stat <= spec.threshold:
                out.append(Finding(col, f"drift_{spec.method}(<= {spec.threshold})", 1,
                                   [round(stat, 6)]))
    return out
