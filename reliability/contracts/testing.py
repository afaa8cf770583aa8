"""Contract tests: generated inputs through each step, and mutation testing of contracts.

* :func:`synthesized_test` — for a step whose every data input has an input contract,
  Hypothesis generates inputs satisfying them, runs the step and asserts its output
  contract holds (shrinking any counterexample).
* :func:`mutation_test` — a clean in-process run gives every step boundary's real
  value; each mutation derived from a contract is injected at that boundary and must be
  stopped by the contract hook (a ContractViolation before anything is committed).

Both back the pytest plugin and ``reliability contracts test``.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reliability.contracts.engine import Contract
from reliability.contracts.hook import ContractHook
from reliability.contracts.interface import interface_of
from reliability.contracts.loader import ContractSet
from reliability.contracts.mutations import derive_mutations
from reliability.errors import ContractViolation
from reliability.pipeline import Pipeline, StepContext, StepHook, StepSpec

__all__ = ["MutationOutcome", "MutationReport", "baseline_outputs", "mutation_test",
           "run_inline", "synthesizable", "synthesized_test"]


def _ctx(pipeline: Pipeline, step: str, params: Any, staging: Path) -> StepContext:
    return StepContext(pipeline=pipeline.name, run_id="contract-test", step=step, attempt=1,
                       interval=None, staging_dir=staging, params=params)


def _call(spec: StepSpec, ctx: StepContext, inputs: Mapping[str, Any], params: Any) -> Any:
    kwargs = dict(inputs)
    if spec.wants_ctx:
        kwargs["ctx"] = ctx
    if spec.wants_params:
        kwargs["params"] = params
    return spec.fn(**kwargs)


def run_step(pipeline: Pipeline, step: str, inputs: dict[str, Any], params: Any,
             hooks: list[StepHook], staging: Path) -> Any:
    """Run one step body in this process with ``hooks`` around it, as a worker would."""
    spec = pipeline.steps[step]
    ctx = _ctx(pipeline, step, params, staging)
    for hook in hooks:
        inputs = hook.before(ctx, spec, inputs)
    output = _call(spec, ctx, inputs, params)
    for hook in hooks:
        output = hook.after(ctx, spec, output)
    return output


_SCRATCH: list[Path] = []


def _scratch(prefix: str) -> Path:
    """A temporary directory for step files, removed when the process exits (outputs that
    are paths into it stay readable until then)."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    if not _SCRATCH:
        atexit.register(_remove_scratch)
    _SCRATCH.append(d)
    return d


def _remove_scratch() -> None:
    while _SCRATCH:
        shutil.rmtree(_SCRATCH.pop(), ignore_errors=True)


def run_inline(pipeline: Pipeline, params: Any, hooks: list[StepHook], staging: Path
               ) -> dict[str, Any]:
    """Run the whole pipeline in this process (topological order); errors propagate."""
    outputs: dict[str, Any] = {}
    for step in pipeline.validate():
        spec = pipeline.steps[step]
        inputs = {p: outputs[s] for p, s in spec.inputs.items()}
        outputs[step] = run_step(pipeline, step, inputs, params, hooks, staging)
    return outputs


def baseline_outputs(pipeline: Pipeline, contracts: ContractSet, params: Any = None,
                     staging: Path | None = None) -> dict[str, Any]:
    """A clean run under the contracts; a violation here means the contracts are wrong."""
    p = pipeline.make_params(params) if not isinstance(params, pipeline.params_model or
                                                       type(None)) else params
    d = staging or _scratch("contract-baseline-")
    return run_inline(pipeline, p, [ContractHook(contracts)], d)


@dataclass(slots=True)
class MutationOutcome:
    contract: str
    mutation: str
    rule: str
    killed: bool
    detail: str = ""


@dataclass(slots=True)
class MutationReport:
    outcomes: list[MutationOutcome] = field(default_factory=list)

    def by_contract(self) -> dict[str, list[MutationOutcome]]:
        out: dict[str, list[MutationOutcome]] = {}
        for o in self.outcomes:
            out.setdefault(o.contract, []).append(o)
        return out

    @property
    def survivors(self) -> list[MutationOutcome]:
        return [o for o in self.outcomes if not o.killed]

    @property
    def kill_rate(self) -> float:
        return 1.0 - len(self.survivors) / len(self.outcomes) if self.outcomes else 1.0


def mutation_test(pipeline: Pipeline, contracts: ContractSet, outputs: Mapping[str, Any],
                  params: Any = None, only: Callable[[Contract], bool] | None = None
                  ) -> MutationReport:
    """Inject every derived mutation at its boundary; the contract hook must stop it."""
    p = pipeline.make_params(params) if params is None or isinstance(params, dict) else params
    hook = ContractHook(contracts, detailed=False)
    report = MutationReport()
    staging = _scratch("contract-mutations-")
    try:
        _mutate_all(pipeline, contracts, outputs, p, hook, report, staging, only)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


def _mutate_all(pipeline: Pipeline, contracts: ContractSet, outputs: Mapping[str, Any],
                p: Any, hook: ContractHook, report: MutationReport, staging: Path,
                only: Callable[[Contract], bool] | None) -> None:
    for contract in contracts:
        if only is not None and not only(contract):
            continue
        spec = pipeline.steps[contract.step]
        inputs = {param: outputs[s] for param, s in spec.inputs.items()}
        for m in derive_mutations(contract):
            ctx = _ctx(pipeline, contract.step, p, staging)
            try:
                if contract.direction == "input":
                    param = contract.spec.input or ""
                    hook.before(ctx, spec, {**inputs, param: m.apply(inputs[param])})
                else:
                    hook.before(ctx, spec, dict(inputs))
                    hook.after(ctx, spec, m.apply(outputs[contract.step]))
            except ContractViolation as exc:
                checks = sorted({str(f.get("check")) for f in exc.failures})
                report.outcomes.append(MutationOutcome(contract.name, m.name, m.rule, True,
                                                       ", ".join(checks)[:120]))
            except Exception as exc:
                report.outcomes.append(MutationOutcome(
                    contract.name, m.name, m.rule, False,
                    f"raised {type(exc).__name__} instead of a contract violation: {exc}"))
            else:
                report.outcomes.append(MutationOutcome(contract.name, m.name, m.rule, False,
                                                       "passed the contract silently"))


def synthesizable(pipeline: Pipeline, contracts: ContractSet, step: str) -> str | None:
    """None if ``step`` can be tested from generated inputs, else the reason it cannot."""
    spec = pipeline.steps[step]
    if not spec.inputs:
        return "the step takes no data inputs"
    got = contracts.inputs(step)
    for param in spec.inputs:
        c = got.get(param)
        if c is None:
            return f"input {param!r} has no input contract"
        if c.spec.kind != "dataframe" or c.spec.frame is None:
            return f"input {param!r} is a {c.spec.kind}; only frames are generated"
        if not c.spec.synthesize:
            return f"input contract {c.name!r} sets synthesize: false"
    return None


def _library(pipeline: Pipeline, step: str, contract: Contract) -> str:
    if contract.spec.backend == "polars":
        return "polars"
    want = interface_of(pipeline.steps[step]).inputs.get(contract.spec.input or "")
    module = getattr(want, "__module__", "") if want is not None else ""
    return "polars" if module.startswith("polars") else "pandas"


def _wants_lazy(pipeline: Pipeline, step: str, contract: Contract) -> bool:
    want = interface_of(pipeline.steps[step]).inputs.get(contract.spec.input or "")
    return getattr(want, "__name__", "") == "LazyFrame" and \
        getattr(want, "__module__", "").startswith("polars")


def synthesized_test(pipeline: Pipeline, contracts: ContractSet, step: str, *,
                     params: Any = None, max_examples: int = 25) -> Callable[[], None]:
    """A zero-argument test: generated valid inputs -> step -> output contract holds."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from reliability.contracts.synth import frames

    p = pipeline.make_params(params) if params is None or isinstance(params, dict) else params
    strategies = {}
    for param, c in contracts.inputs(step).items():
        assert c.spec.frame is not None
        strategy = frames(c.spec.frame, _library(pipeline, step, c))
        if _wants_lazy(pipeline, step, c):
            strategy = strategy.map(lambda frame: frame.lazy())
        strategies[param] = strategy
    hook = ContractHook(contracts, detailed=False)  # exact counts and samples, no pandera
    staging = _scratch(f"contract-{step}-")

    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.large_base_example])
    @given(st.fixed_dictionaries(strategies))
    def test(inputs: dict[str, Any]) -> None:
        try:
            run_step(pipeline, step, dict(inputs), p, [hook], staging)
        except ContractViolation as exc:
            raise AssertionError(f"step {step!r} broke a contract on generated valid "
                                 f"inputs:\n{exc}") from None

    return test  # type: ignore[no-any-return]
