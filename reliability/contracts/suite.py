"""The whole contract test suite of a pipeline, as data (used by the CLI)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reliability.contracts.testing import (
    baseline_outputs,
    mutation_test,
    synthesizable,
    synthesized_test,
)
from reliability.errors import ReliabilityError

if TYPE_CHECKING:
    from reliability.contracts.loader import ContractSet
    from reliability.pipeline import Pipeline

__all__ = ["SuiteResult", "SuiteRow", "run_suite", "suite_stages"]


@dataclass(frozen=True, slots=True)
class SuiteRow:
    name: str
    status: str  # passed | failed | skipped
    detail: str = ""


@dataclass(slots=True)
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
    return stages + (["baseline run", "mutations"] if mutations else [])


def run_suite(pipeline: Pipeline, contracts: ContractSet, *, params: Any = None,
              max_examples: int = 25, mutations: bool = True,
              progress: Callable[[str], None] | None = None) -> SuiteResult:
    """Generated-input tests per step, a baseline run and mutation testing.

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
        except (AssertionError, Exception) as exc:
            result.rows.append(SuiteRow(name, "failed", _brief(exc)))
        else:
            result.rows.append(SuiteRow(name, "passed", f"{max_examples} examples"))
    if not mutations:
        return result
    announce("baseline run")
    try:
        outputs = baseline_outputs(pipeline, contracts, params)
    except (ReliabilityError, Exception) as exc:
        result.rows.append(SuiteRow("baseline run", "failed", _brief(exc)))
        return result
    result.rows.append(SuiteRow("baseline run", "passed", "every contract holds"))
    announce("mutations")
    report = mutation_test(pipeline, contracts, outputs, params)
    for contract, outcomes in sorted(report.by_contract().items()):
        killed = sum(o.killed for o in outcomes)
        survivors = [o.mutation for o in outcomes if not o.killed]
        detail = f"kill rate {killed}/{len(outcomes)}"
        if survivors:
            detail += f"; survived: {', '.join(survivors[:6])}"
        result.rows.append(SuiteRow(f"mutations: {contract}",
                                    "failed" if survivors else "passed", detail))
    result.kill_rate = report.kill_rate
    return result


def _brief(exc: BaseException, lines: int = 4) -> str:
    """The first lines of an error (the headline and the first failing checks)."""
    text = [line for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    return "\n".join(text[:lines])[:600]
