"""A compiled contract: validates a value in one fast pass, reports every failure as data.

:meth:`Contract.validate` dispatches on the contract kind and the frame library (pandas or
polars, chosen from the value's type, so neither is imported unless the value is one).
The happy path runs the fused validator only; when it finds a problem, pandera's lazy
validation builds the detailed report, completed by the fused validator's own findings
for rules pandera does not express (NaN in polars, row bounds, gates, drift).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Any

from reliability._record import record
from reliability.contracts.findings import Finding
from reliability.contracts.spec import ColumnSpec, ContractSpec, FrameSpec
from reliability.errors import ContractViolation

__all__ = ["Contract", "Report", "frame_library"]

_RANGE_FAMILY = {"in_range", "greater_than", "greater_than_or_equal_to", "less_than",
                 "less_than_or_equal_to"}


def frame_library(value: Any) -> str | None:
    """'pandas' or 'polars' for a frame of that library, else None (no imports)."""
    mod = type(value).__module__
    if mod.startswith("pandas") and type(value).__name__ == "DataFrame":
        return "pandas"
    if mod.startswith("polars") and type(value).__name__ in {"DataFrame", "LazyFrame"}:
        return "polars"
    return None


@record(slots=True)
class Report:
    """The verdict of one contract on one value."""

    contract: str
    ok: bool
    rows: int
    seconds: float
    failures: list[dict[str, Any]] = field(default_factory=list)

    def summary(self, limit: int = 8) -> str:
        lines = [_line(f) for f in self.failures[:limit]]
        if len(self.failures) > limit:
            lines.append(f"  ... and {len(self.failures) - limit} more failing check(s)")
        return "\n".join(lines)


def _line(f: dict[str, Any]) -> str:
    column = f["column"] or "<frame>"
    cases = f["failure_cases"]
    if "actual" in f:
        declared = str(f["check"])[len("dtype("):-1].strip("'")
        return f"  - {column}: dtype mismatch: declared {declared}, got {f['actual']}" + (
            f" ({f['failure_count']} value(s), e.g. {cases[:3]})" if f["failure_count"] > 1
            or cases != [f["actual"]] else "")
    return (f"  - {column}: {f['check']} failed for {f['failure_count']} row(s), "
            f"e.g. {cases[:3]}")


class Contract:
    """One contract, compiled. Build with :func:`reliability.contracts.load_contracts`
    or :meth:`ContractSet.add`."""

    def __init__(self, spec: ContractSpec, *, file: str | None = None,
                 base_dir: Path | None = None) -> None:
        self.spec = spec
        self.file = file
        self.base_dir = base_dir or Path.cwd()
        self._validators: dict[str, Any] = {}
        self._baselines: dict[str, Any] = {}
        self._prediction_validator: Any = None

    def __repr__(self) -> str:
        return f"Contract({self.name!r})"

    name = property(lambda self: self.spec.name)
    step = property(lambda self: self.spec.step)
    direction = property(lambda self: self.spec.direction)

    # -- validation --------------------------------------------------------------------
    def validate(self, value: Any, *, inputs: Mapping[str, Any] | None = None,
                 detailed: bool = True) -> Report:
        """Check ``value``; never raises for bad data (the report says what failed).

        ``detailed=False`` skips pandera's report on failure (the fast path's own findings,
        with exact counts and samples, are still returned)."""
        start = time.perf_counter()
        rows = 1
        if not self.spec.validation.enabled:
            return Report(self.name, True, -1, time.perf_counter() - start)
        kind = self.spec.kind
        findings: list[Finding]
        if kind == "dataframe":
            rows, findings = self._frame(value, detailed)
        elif kind == "metrics":
            from reliability.contracts.checks import check_gates, check_metrics

            findings = check_metrics(self.spec.metrics, value) if self.spec.metrics else []
            findings += check_gates(self.spec.gates, value)
        elif kind == "model":
            from reliability.contracts.checks import check_model

            assert self.spec.model is not None
            findings = check_model(self.spec.model, value, inputs or {}, self._predictions)
        else:
            from reliability.contracts.checks import check_file

            assert self.spec.file is not None
            findings = check_file(self.spec.file, value)
        failures = [f.as_dict(self.name) for f in findings]
        return Report(self.name, not failures, rows, time.perf_counter() - start, failures)

    def enforce(self, value: Any, *, inputs: Mapping[str, Any] | None = None,
                detailed: bool = True) -> Report:
        """Validate, raising :class:`ContractViolation` with the full report on failure."""
        report = self.validate(value, inputs=inputs, detailed=detailed)
        if not report.ok:
            where = (f"input {self.spec.input!r} of step {self.step!r}"
                     if self.direction == "input" else f"output of step {self.step!r}")
            raise ContractViolation(
                f"contract {self.name!r} failed on the {where}: "
                f"{len(report.failures)} failing check(s)\n{report.summary()}\n"
                f"Fix: correct the data (or the step), or change the contract"
                + (f" in {self.file}" if self.file else ""),
                contract=self.name, step=self.step, direction=self.direction,
                failures=report.failures)
        return report

    # -- frames ------------------------------------------------------------------------
    def _frame(self, value: Any, detailed: bool) -> tuple[int, list[Finding]]:
        lib = frame_library(value)
        frame_spec = self.spec.frame
        assert frame_spec is not None
        if lib is None:
            return 0, [Finding(None, "kind(dataframe)", 1, [type(value).__name__])]
        if self.spec.backend not in ("any", lib):
            return 0, [Finding(None, f"backend({self.spec.backend})", 1, [lib])]
        if self.spec.validation.sample:
            value = _sample(value, lib, self.spec.validation.sample)
        rows, findings = self._validator(lib, frame_spec)(value)
        if self.spec.drift and (detailed or not findings):  # the verdict is already known
            from reliability.contracts.checks import check_drift

            findings += check_drift(self.spec.drift, value, self._load_baselines())
        if findings and detailed:
            findings = self._with_pandera(frame_spec, lib, value, findings)
        return rows, findings

    def _validator(self, lib: str, spec: FrameSpec) -> Any:
        v = self._validators.get(lib)
        if v is None:
            if lib == "polars":
                from reliability.contracts._polars import PolarsValidator

                v = PolarsValidator(spec)
            else:
                from reliability.contracts._pandas import PandasValidator

                v = PandasValidator(spec)
            self._validators[lib] = v
        return v

    def _with_pandera(self, spec: FrameSpec, lib: str, value: Any,
                      own: list[Finding]) -> list[Finding]:
        """pandera's report completed by our own findings. A column of the wrong dtype is
        reported once, as our dtype finding (declared and actual type): pandera's value
        checks on it would only echo errors such as comparing strings with numbers."""
        from reliability.contracts._pandera import lazy_report

        frame = value.collect() if type(value).__name__ == "LazyFrame" else value
        mistyped = {f.column for f in own if _family(f.check) == "dtype"}
        detailed = [f for f in lazy_report(spec, lib, frame) if f.column not in mistyped]
        covered = {(f.column, _family(f.check)) for f in detailed}
        return detailed + [f for f in own if (f.column, _family(f.check)) not in covered]

    def _predictions(self, predicted: Any) -> list[Finding]:
        import pandas as pd

        if self._prediction_validator is None:
            from reliability.contracts._pandas import PandasValidator

            col = self.spec.model.predictions if self.spec.model else None
            assert isinstance(col, ColumnSpec)
            self._prediction_validator = PandasValidator(FrameSpec.model_validate(
                {"columns": {"prediction": col}, "min_rows": 0}))
        _, findings = self._prediction_validator(pd.DataFrame({"prediction": predicted}))
        return list(findings)

    def _load_baselines(self) -> dict[str, Any]:
        for d in self.spec.drift:
            if d.baseline and d.baseline not in self._baselines:
                import pandas as pd

                self._baselines[d.baseline] = pd.read_csv(self.base_dir / d.baseline)
        return self._baselines


def _family(check: str) -> str:
    head = check.split("(", 1)[0].split("[", 1)[0]
    if head in _RANGE_FAMILY:
        return "range"
    if head.startswith("dtype"):
        return "dtype"
    return head


def _sample(value: Any, lib: str, n: int) -> Any:
    if lib == "pandas":
        return value.sample(n=min(n, len(value)), random_state=0)
    if type(value).__name__ == "LazyFrame":
        return value.head(n)
    return value.sample(n=min(n, value.height), seed=0)
