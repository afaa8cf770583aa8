"""Contract tests: generated inputs through each step, and mutation testing of contracts.

* :func:`synthesized_test` — for a step whose every data input has an input contract,
  Hypothesis generates inputs satisfying them, runs the step and asserts its output
  contract holds (shrinking any counterexample).
* :func:`mutation_test` — the recorded values of a good run (the snapshot committed with
  the contracts, see :mod:`reliability.contracts.snapshot`) give every step boundary a
  real value; each mutation derived from a contract is injected at that boundary and must
  be stopped by the contract hook (a ContractViolation before anything is committed).
  Mutations that cannot be built for a value's dtype are reported as not applied.

Steps run through the runner's step wrapper (:func:`reliability.runner.worker.run_task`)
with inputs committed to a throwaway artifact store, and :func:`isolated` runs the tests in
a temporary working directory and home: they need no network and leave nothing behind.
Both back the pytest plugin and ``reliability contracts test``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import field
from pathlib import Path
from typing import Any

from reliability._record import record
from reliability.contracts.engine import Contract
from reliability.contracts.hook import ContractHook
from reliability.contracts.interface import interface_of
from reliability.contracts.loader import ContractSet
from reliability.contracts.mutations import derive_mutations
from reliability.errors import ContractViolation
from reliability.pipeline import Pipeline, StepContext, StepHook

__all__ = ["MutationOutcome", "MutationReport", "check_recorded", "describe_failure",
           "isolated", "mutation_test", "synthesizable", "synthesized_test"]


def _ctx(pipeline: Pipeline, step: str, params: Any, staging: Path) -> StepContext:
    return StepContext(pipeline=pipeline.name, run_id="contract-test", step=step, attempt=1,
                       interval=None, staging_dir=staging, params=params)


_SCRATCH: list[Path] = []
_ROOTS: list[Path] = []  # the directories of active isolated() blocks


def _scratch(prefix: str) -> Path:
    """A temporary directory for step files, removed when the process exits (outputs that
    are paths into it stay readable until then)."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir=_ROOTS[-1] if _ROOTS else None))
    if not _SCRATCH:
        atexit.register(_remove_scratch)
    _SCRATCH.append(d)
    return d


def _remove_scratch() -> None:
    while _SCRATCH:
        shutil.rmtree(_SCRATCH.pop(), ignore_errors=True)


@contextlib.contextmanager
def isolated() -> Iterator[Path]:
    """Run the body in a fresh temporary directory as working directory, with
    ``RELIABILITY_HOME`` and Hypothesis' storage inside it; all removed afterwards."""
    from hypothesis import configuration

    root = Path(tempfile.mkdtemp(prefix="contract-tests-"))
    (root / "work").mkdir()
    cwd, home = os.getcwd(), os.environ.get("RELIABILITY_HOME")
    previous = configuration.storage_directory(intent_to_write=False).home_directory
    os.environ["RELIABILITY_HOME"] = str(root / "home")
    configuration.set_hypothesis_home_dir(root / "hypothesis")
    os.chdir(root / "work")
    _ROOTS.append(root)
    try:
        yield root
    finally:
        _ROOTS.remove(root)
        os.chdir(cwd)
        configuration.set_hypothesis_home_dir(previous)
        if home is None:
            os.environ.pop("RELIABILITY_HOME", None)
        else:
            os.environ["RELIABILITY_HOME"] = home
        shutil.rmtree(root, ignore_errors=True)


def check_recorded(pipeline: Pipeline, contracts: ContractSet, recorded: Mapping[str, Any],
                   params: Any = None) -> None:
    """Every contract holds on the recorded values (raises ContractViolation if not: the
    contracts or the recording changed)."""
    p = _params(pipeline, params)
    hook = ContractHook(contracts, params_model=pipeline.params_model)
    staging = _scratch("contract-recorded-")
    for step in pipeline.validate():
        if not any(c.step == step for c in contracts):
            continue
        spec = pipeline.steps[step]
        ctx = _ctx(pipeline, step, p, staging)
        hook.before(ctx, spec, {param: recorded[s] for param, s in spec.inputs.items()})
        if step in recorded:
            hook.after(ctx, spec, recorded[step])


def describe_failure(exc: BaseException, lines: int = 6) -> str:
    """An error as text: every failure of a group (Hypothesis reports several distinct
    failures as one group), each with its first lines."""
    if isinstance(exc, BaseExceptionGroup):
        parts = [f"{len(exc.exceptions)} distinct failures:"]
        for i, sub in enumerate(exc.exceptions, 1):
            sub_text = describe_failure(sub, lines).replace("\n", "\n     ")
            parts.append(f"  {i}. {sub_text}")
        return "\n".join(parts)
    found = [line for line in str(exc).splitlines() if line.strip()]
    if not isinstance(exc, AssertionError | ContractViolation):
        found = [f"{type(exc).__name__}: {found[0] if found else ''}", *found[1:]]
    return "\n".join(found[:lines] or [type(exc).__name__])


def _params(pipeline: Pipeline, params: Any) -> Any:
    if params is None or isinstance(params, Mapping):
        return pipeline.make_params(params)
    return params


@record(slots=True)
class MutationOutcome:
    """One mutation at its boundary: killed (the contract stopped it), survived, or not
    applied (it cannot be built for the value's dtype; ``detail`` says why)."""

    contract: str
    mutation: str
    rule: str
    killed: bool
    detail: str = ""
    applied: bool = True


@record(slots=True)
class MutationReport:
    outcomes: list[MutationOutcome] = field(default_factory=list)

    def by_contract(self) -> dict[str, list[MutationOutcome]]:
        out: dict[str, list[MutationOutcome]] = {}
        for o in self.outcomes:
            out.setdefault(o.contract, []).append(o)
        return out

    @property
    def applied(self) -> list[MutationOutcome]:
        return [o for o in self.outcomes if o.applied]

    @property
    def survivors(self) -> list[MutationOutcome]:
        return [o for o in self.outcomes if o.applied and not o.killed]

    @property
    def skipped(self) -> list[MutationOutcome]:
        return [o for o in self.outcomes if not o.applied]

    @property
    def kill_rate(self) -> float:
        """Killed / applied mutations (those that cannot apply are not counted)."""
        applied = self.applied
        return 1.0 - len(self.survivors) / len(applied) if applied else 1.0


def mutation_test(pipeline: Pipeline, contracts: ContractSet, outputs: Mapping[str, Any],
                  params: Any = None, only: Callable[[Contract], bool] | None = None
                  ) -> MutationReport:
    """Inject every derived mutation at its boundary; the contract hook must stop it."""
    p = _params(pipeline, params)
    hook = ContractHook(contracts, detailed=False, params_model=pipeline.params_model)
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
            param = contract.spec.input or ""
            target = inputs[param] if contract.direction == "input" else outputs[contract.step]
            try:
                mutated = m.apply(target)
            except Exception as exc:  # e.g. a cast the column's dtype does not allow
                report.outcomes.append(MutationOutcome(
                    contract.name, m.name, m.rule, False, applied=False,
                    detail=f"does not apply to this value: {type(exc).__name__}: {exc}"[:200]))
                continue
            try:
                if contract.direction == "input":
                    hook.before(ctx, spec, {**inputs, param: mutated})
                else:
                    hook.before(ctx, spec, dict(inputs))
                    hook.after(ctx, spec, mutated)
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
    """A zero-argument test: generated valid inputs -> the step, run by the runner's step
    wrapper with its contract hook -> the output contract holds."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from reliability.contracts.synth import frames

    p = _params(pipeline, params)
    strategies = {}
    for param, c in contracts.inputs(step).items():
        assert c.spec.frame is not None
        strategy = frames(c.spec.frame, _library(pipeline, step, c))
        if _wants_lazy(pipeline, step, c):
            strategy = strategy.map(lambda frame: frame.lazy())
        strategies[param] = strategy
    # exact counts and samples, no pandera report
    hooks: list[StepHook] = [
        ContractHook(contracts, detailed=False, params_model=pipeline.params_model)]
    attempts = iter(range(1, 1 << 30))
    store = _scratch(f"contract-{step}-") / "store"

    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.large_base_example])
    @given(st.fixed_dictionaries(strategies))
    def test(inputs: dict[str, Any]) -> None:
        _run_generated(pipeline, hooks, store, step, inputs, p, next(attempts))

    return test  # type: ignore[no-any-return]


def _run_generated(pipeline: Pipeline, hooks: list[StepHook], root: Path, step: str,
                   inputs: dict[str, Any], params: Any, attempt: int) -> None:
    from reliability.runner.store import ArtifactStore, encode
    from reliability.runner.worker import Task, run_task

    store = ArtifactStore(root)
    run_id = "contract-test"
    staging, scratch, quarantine = store.attempt_paths(run_id, step, attempt)
    committed: dict[str, tuple[str, str]] = {}
    for param, value in inputs.items():
        staged = Path(staging).with_name(f"{step}.{attempt}.in.{param}")
        staged.parent.mkdir(parents=True, exist_ok=True)
        digest, codec, _ = encode(value, staged)
        store.commit(staged, digest)
        committed[param] = (store.location(digest), codec)
    task = Task(run_id=run_id, step=step, attempt=attempt, inputs=committed, params=params,
                interval=None, staging_file=staging, quarantine_file=quarantine,
                scratch_dir=scratch)
    result = run_task(pipeline, hooks, task)
    store.discard_attempt(run_id, step, attempt)
    if result.ok:
        return
    if result.error_type == "ContractViolation":
        raise AssertionError(f"step {step!r} broke a contract on generated valid inputs:\n"
                             f"{result.error}")
    # one exception type per error type, so Hypothesis keeps distinct failures apart
    raise _failure_type(str(result.error_type))(
        f"step {step!r} raised {result.error_type} on generated valid inputs: {result.error}")


_FAILURE_TYPES: dict[str, type[AssertionError]] = {}


def _failure_type(error_type: str) -> type[AssertionError]:
    found = _FAILURE_TYPES.get(error_type)
    if found is None:
        found = _FAILURE_TYPES[error_type] = type(
            f"StepRaised{error_type.rsplit('.', 1)[-1]}", (AssertionError,), {})
    return found
