"""Find contracts that can pass bad data silently.

Warnings: validation disabled or sampled, ``strict: false``/``filter`` (unknown columns
pass), ``min_rows: 0`` (an empty frame passes), nullable columns whose value checks nulls
skip (pandera's ``ignore_na``), a frame contract with no columns, a metrics contract with
no quality gate, a model contract that never looks at predictions, pandera switched off
or to schema-only depth by environment variables, and steps with no output contract.
Info: contracts excluded from generated-input tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

from reliability._record import record
from reliability.contracts.engine import Contract

if TYPE_CHECKING:
    from reliability.pipeline import Pipeline

__all__ = ["Lint", "lint_contracts"]


@record(frozen=True, slots=True)
class Lint:
    level: Literal["warning", "info"]
    contract: str
    where: str
    message: str


def lint_contracts(contracts: Iterable[Contract], pipeline: Pipeline | None = None
                   ) -> list[Lint]:
    out: list[Lint] = []
    seen: list[Contract] = list(contracts)
    for c in seen:
        out.extend(_lint_one(c))
    if os.environ.get("PANDERA_VALIDATION_ENABLED", "").lower() in {"0", "false", "no"}:
        out.append(Lint("warning", "<environment>", "PANDERA_VALIDATION_ENABLED",
                        "pandera validation is disabled for pandera-declared schemas"))
    if os.environ.get("PANDERA_VALIDATION_DEPTH", "").upper() == "SCHEMA_ONLY":
        out.append(Lint("warning", "<environment>", "PANDERA_VALIDATION_DEPTH",
                        "SCHEMA_ONLY: pandera checks no data values"))
    if pipeline is not None:
        guarded = {c.step for c in seen if c.direction == "output"}
        for step in pipeline.steps:
            if step not in guarded:
                out.append(Lint("warning", f"{pipeline.name}.{step}", "step",
                                f"step {step!r} has no output contract: its output is "
                                "committed unvalidated"))
    return out


def _lint_one(c: Contract) -> list[Lint]:
    s = c.spec
    out: list[Lint] = []

    def warn(where: str, msg: str, level: Literal["warning", "info"] = "warning") -> None:
        out.append(Lint(level, c.name, where, msg))

    if not s.validation.enabled:
        warn("validation.enabled", "validation is disabled: every value passes")
    if s.validation.sample:
        warn("validation.sample", f"only {s.validation.sample} sampled rows are checked; "
             "bad rows outside the sample pass")
    if not s.synthesize:
        warn("synthesize", "excluded from generated-input contract tests", "info")
    f = s.frame
    if f is not None:
        if f.strict is not True:
            warn("schema.strict", f"strict: {f.strict} lets unknown columns through")
        if f.min_rows == 0:
            warn("schema.min_rows", "min_rows: 0 lets an empty frame pass")
        if not f.columns:
            warn("schema.columns", "no columns declared: only the row count is checked")
        for name, col in f.columns.items():
            if col.nullable and col.ignore_na and (col.check_names() or col.unique):
                warn(f"schema.columns.{name}", "nullable column: nulls/NaN skip its value "
                     "checks (ignore_na; set ignore_na: false to fail them)")
            if not col.required:
                warn(f"schema.columns.{name}.required", "optional column: its absence passes")
    if s.kind == "metrics" and not s.gates:
        warn("gates", "metrics contract without a quality gate")
    if s.kind == "model" and (s.model is None or s.model.predictions is None
                              or s.model.probe is None):
        warn("model", "model contract without probe/predictions: predictions are unchecked")
    return out
