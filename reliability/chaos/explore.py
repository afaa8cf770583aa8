"""Fault-schedule exploration: Hypothesis searches for a schedule that breaks an invariant.

For each generated schedule (which steps, which faults, when) the pipeline runs under it and
must hold these invariants, checked in this order:

* ``single_commit_per_step`` — no step's output was committed twice;
* ``outputs_equal_baseline`` — every committed output equals the fault-free baseline's;
* ``run_succeeds`` — the run succeeded: the pipeline's retries absorbed the faults (a failed
  or cancelled run is a violation; pass ``run_succeeds=False`` to accept runs that fail
  loudly with no wrong output).

A schedule that breaks one is shrunk by Hypothesis to a minimal one and written out as a
replayable experiment (YAML) whose steady-state hypothesis checks the same invariants::

    result = explore(pipeline, home=tmp, max_examples=25, budget=60)
    if result.violation:
        print(result.experiment_yaml)
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import field
from pathlib import Path
from typing import Any

from reliability._record import record
from reliability.chaos.controller import inject
from reliability.chaos.faults import ExceptionFault, FaultBase, KillWorker, Latency
from reliability.errors import ConfigError, RunError
from reliability.pipeline import Pipeline
from reliability.runner import Ledger, RunResult
from reliability.runs import Trigger

__all__ = ["ExploreResult", "check_invariants", "explore", "schedule_strategy"]

KINDS = ("kill_worker", "exception", "latency")
AFTERS = (0.0, 0.05, 0.1, 0.2, 0.4)


@record
class ExploreResult:
    """What exploration found. ``schedule`` is minimal when ``violation`` is set."""

    examples: int
    elapsed: float
    violation: str | None = None
    schedule: list[FaultBase] = field(default_factory=list)
    experiment_yaml: str | None = None
    budget_exhausted: bool = False

    @property
    def found(self) -> bool:
        return self.violation is not None


def schedule_strategy(steps: Sequence[str], kinds: Sequence[str] = KINDS,
                      max_faults: int = 3) -> Any:
    """A Hypothesis strategy of fault schedules over ``steps`` (shrinks towards fewer,
    earlier, simpler faults)."""
    from hypothesis import strategies as st

    step = st.sampled_from(sorted(steps))
    after = st.sampled_from(AFTERS)
    options = {
        "kill_worker": st.builds(KillWorker, step=step, after=after),
        "exception": st.builds(ExceptionFault, step=step, error=st.just("ConnectionError"),
                               when=st.sampled_from(["before", "after"])),
        "latency": st.builds(Latency, step=step, seconds=st.sampled_from([0.01, 0.05])),
    }
    fault = st.one_of([options[k] for k in kinds])
    return st.lists(fault, min_size=1, max_size=max_faults,
                    unique_by=lambda f: (f.type, f.step))


def check_invariants(result: RunResult, baseline: RunResult, ledger: Ledger, *,
                     run_succeeds: bool = True) -> str | None:
    """None if the run is acceptable, else the broken invariant (its name first)."""
    from reliability.chaos.runner import _commit_probe

    commit = _commit_probe(result, ledger)
    if not commit["ok"]:
        return f"single_commit_per_step: {commit['detail']}"
    wrong = sorted(s for s, h in result.outputs.items() if h != baseline.outputs.get(s))
    if wrong:
        return (f"outputs_equal_baseline: committed output of {wrong} differs from the "
                "fault-free baseline")
    if result.ok:
        return None
    failed = "; ".join(f"{step}: {error}" for step, error in sorted(result.failed.items()))
    if run_succeeds:
        return f"run_succeeds: the run {result.status}" + (f" ({failed})" if failed else "")
    if not result.failed:
        return f"run_succeeds: the run {result.status} without a failed step to show for it"
    return None


def _named(schedule: Sequence[FaultBase]) -> list[FaultBase]:
    return [f.model_copy(update={"name": f"{f.type}-{i}"})  # type: ignore[attr-defined]
            for i, f in enumerate(schedule)]


def explore(pipeline: Pipeline, *, home: str | Path, params: Any = None,
            steps: Sequence[str] | None = None, kinds: Sequence[str] = KINDS,
            max_faults: int = 3, max_examples: int = 25, budget: float = 60.0, seed: int = 0,
            workers: int | None = None, pipeline_ref: str | None = None,
            progress: Callable[[int, str | None], None] | None = None,
            run_succeeds: bool = True) -> ExploreResult:
    """Search fault schedules for an invariant violation within ``max_examples``/``budget``.

    ``run_succeeds=False`` accepts a run that fails (loudly: a failed step, no wrong or
    duplicated output); by default a failed run is a violation.

    ``progress(runs, problem)`` is called after each schedule ran (``problem`` is the broken
    invariant, or None) -- while searching and while shrinking.
    """
    from hypothesis import HealthCheck, Phase, find, settings
    from hypothesis.errors import Flaky, NoSuchExample, Unsatisfiable

    _check_choices("--steps", steps or (), sorted(pipeline.steps))
    _check_choices("--kinds", kinds, list(KINDS))
    from reliability.assembly import RunOptions, assemble

    asm = assemble(pipeline, RunOptions(home=home, workers=workers, seed=seed))
    runner = asm.runner
    t0 = time.monotonic()
    deadline = t0 + budget
    runs = 0
    last: dict[str, Any] = {}
    try:
        baseline = asm.run(params, resume=False, trigger=Trigger.EXPLORE,
                           source=f"explore-{seed}-baseline")
        if not baseline.ok:
            raise RunError(f"the fault-free baseline run failed: {baseline.failed}. "
                           "Fix: make the pipeline pass before exploring faults",
                           run_id=baseline.run_id)

        def breaks(schedule: list[FaultBase]) -> bool:
            nonlocal runs
            if time.monotonic() > deadline:
                return False
            runs += 1
            named = _named(schedule)
            with inject(runner, *named, seed=seed, experiment=f"explore-{seed}"):
                result = asm.run(params, resume=False, trigger=Trigger.EXPLORE,
                                 source=f"explore-{seed}")
            problem = check_invariants(result, baseline, runner.ledger,
                                       run_succeeds=run_succeeds)
            if problem:
                last["problem"] = problem
                last[repr(named)] = problem
                broken.append((list(schedule), problem))
            if progress is not None:
                progress(runs, problem)
            return problem is not None

        strategy = schedule_strategy(steps or list(pipeline.steps), kinds, max_faults)
        conf = settings(max_examples=max_examples, deadline=None, database=None,
                        phases=[Phase.generate, Phase.shrink],
                        suppress_health_check=list(HealthCheck))
        broken: list[tuple[list[FaultBase], str]] = []
        try:
            minimal = find(strategy, breaks, settings=conf, random=random.Random(seed))
        except Flaky:  # timing made a schedule break once and not again: keep the smallest
            if not broken:
                return ExploreResult(runs, time.monotonic() - t0)
            minimal = min(broken, key=lambda b: (len(b[0]), repr(b[0])))[0]
        except (NoSuchExample, Unsatisfiable):
            return ExploreResult(runs, time.monotonic() - t0,
                                 budget_exhausted=time.monotonic() > deadline)
    finally:
        asm.close()
    named = _named(minimal)
    violation = last.get(repr(named)) or last.get("problem")
    return ExploreResult(runs, time.monotonic() - t0, violation, named,
                         to_experiment_yaml(named, seed=seed, violation=violation,
                                            pipeline_ref=pipeline_ref, params=params,
                                            run_succeeds=run_succeeds),
                         budget_exhausted=time.monotonic() > deadline)


def _check_choices(flag: str, given: Sequence[str], allowed: list[str]) -> None:
    if not given and flag == "--kinds":
        raise ConfigError("no fault kinds given", path=[flag], fix=f"use some of {allowed}")
    for value in given:
        if value not in allowed:
            raise ConfigError(f"{value!r} is not one of the choices", path=[flag],
                              fix=f"use a comma-separated subset of {allowed}")


def to_experiment_yaml(schedule: Sequence[FaultBase], *, seed: int, violation: str | None,
                       pipeline_ref: str | None, params: Any = None,
                       run_succeeds: bool = True) -> str:
    """A replayable experiment file for ``schedule`` checking the explored invariants."""
    import yaml

    doc: dict[str, Any] = {
        "title": "Minimal fault schedule found by `reliability chaos explore`",
        "description": f"Breaks: {violation}" if violation else "",
        "seed": seed,
    }
    if pipeline_ref:
        doc["pipeline"] = pipeline_ref
    if params:
        doc["params"] = dict(params)
    doc["steady-state-hypothesis"] = {"run_succeeds": run_succeeds,
                                      "outputs_equal_baseline": True,
                                      "single_commit_per_step": True}
    doc["method"] = [{"type": f.type}  # type: ignore[attr-defined]
                     | f.model_dump(mode="json", exclude_defaults=True) for f in schedule]
    return str(yaml.safe_dump(doc, sort_keys=False))
