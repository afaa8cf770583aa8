"""The whole contract test suite of a pipeline, as data (used by the CLI)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import field
from typing import TYPE_CHECKING, Any

from reliability._record import record
from reliability.contracts.testing import (
    check_recorded,
    describe_failure,
    mutation_test,
    synthesizable,
    synthesized_test,
)

if TYPE_CHECKING:
    from reliability.contracts.loader import ContractSet
    from reliability.pipeline import Pipeline

__all__ = ["SuiteResult", "SuiteRow", "run_suite", "suite_stages"]


@record(frozen=True, slots=True)
class SuiteRow:
    name: str
    status: str  # passed | failed | skipped
    detail: str = ""


@record(slots=True)
class SuiteResult:
    rows: list[SuiteRow] = field(default_factory=list)
    kill_rate: float | None = None

    @property
    def ok(self) -> bool:
        return not any(r.status == "failed" for r in self.rows)

    def headline(self) -> str:
        counts = {s: sum(1 for r in self.rows if r.status == s)
                  for s in ("passed", "failed", "skipped")}
        rate = "" if self.kill_rate is None else f", mutation kill rate {self.kill_rate:.0%}"
        return (f"{counts['passed']} passed, {counts['failed']} failed, "
                f"{counts['skipped']} skipped{rate}")


def suite_stages(pipeline: Pipeline, contracts: ContractSet, *, mutations: bool = True
                 ) -> list[str]:
    """The names :func:`run_suite` announces to ``progress``, in order."""
    stages = [f"generated inputs: {step}" for step in pipeline.validate()
              if any(c.step == step for c in contracts)]
    return stages + (["recorded inputs", "mutations"] if mutations else [])


def run_suite(pipeline: Pipeline, contracts: ContractSet, *, params: Any = None,
              recorded: Mapping[str, Any] | None = None, max_examples: int = 25,
              mutations: bool = True, progress: Callable[[str], None] | None = None,
              missing: str = "") -> SuiteResult:
    """Generated-input tests per step, then mutation testing on ``recorded`` step outputs
    (a snapshot of a good run; ``missing`` says why there is none). Runs no pipeline.

    ``progress(stage)`` is called as each stage of :func:`suite_stages` begins.
    """
    result = SuiteResult()
    announce = progress or (lambda _stage: None)
    for step in pipeline.validate():
        if not any(c.step == step for c in contracts):
            continue
        reason = synthesizable(pipeline, contracts, step)
        name = f"generated inputs: {step}"
        announce(name)
        if reason is not None:
            result.rows.append(SuiteRow(name, "skipped", reason))
            continue
        try:
            synthesized_test(pipeline, contracts, step, params=params,
                             max_examples=max_examples)()
        except Exception as exc:
            result.rows.append(SuiteRow(name, "failed", _brief(exc)))
        else:
            result.rows.append(SuiteRow(name, "passed", f"{max_examples} examples"))
    if not mutations:
        return result
    announce("recorded inputs")
    if recorded is None:
        result.rows.append(SuiteRow("recorded inputs", "failed", missing or (
            "no recorded step outputs; record them with `reliability contracts snapshot`")))
        return result
    try:
        check_recorded(pipeline, contracts, recorded, params)
    except Exception as exc:
        result.rows.append(SuiteRow("recorded inputs", "failed", _brief(exc) + (
            "\nFix: record them again with `reliability contracts snapshot`")))
        return result
    result.rows.append(SuiteRow("recorded inputs", "passed", "every contract holds"))
    announce("mutations")
    report = mutation_test(pipeline, contracts, recorded, params)
    for contract, outcomes in sorted(report.by_contract().items()):
        applied = [o for o in outcomes if o.applied]
        killed = sum(o.killed for o in applied)
        survivors = [o.mutation for o in applied if not o.killed]
        detail = f"kill rate {killed}/{len(applied)}"
        if survivors:
            detail += f"; survived: {', '.join(survivors[:6])}"
        skipped = [o.mutation for o in outcomes if not o.applied]
        if skipped:
            detail += f"; not applicable: {', '.join(skipped[:6])}"
        result.rows.append(SuiteRow(f"mutations: {contract}",
                                    "failed" if survivors else "passed", detail))
    result.kill_rate = report.kill_rate
    return result


def _brief(exc: BaseException) -> str:
    """The error's headline and first failing checks; each failure of a group."""
    return describe_failure(exc, lines=4)
