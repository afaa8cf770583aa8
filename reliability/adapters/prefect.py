"""Prefect 3 adapter: a :class:`~reliability.pipeline.Pipeline` as a flow, and our hooks
around an existing ``@task``.

    from reliability.adapters.prefect import to_flow
    flow = to_flow("pipelines.reference:pipeline")
    flow(params={"rows": 1000})                  # or deploy it like any Prefect flow

One Prefect task per step, dependencies preserved (each task receives its upstream tasks'
futures). Each task calls the shared step wrapper
(:class:`~reliability.adapters.core.StepBridge`): our contracts, chaos faults, ledger,
metrics and SLA monitor run around the step, outputs go to our content-addressed store and
tasks hand each other its digests (no result persistence of DataFrames). Prefect retries a
step ``Retry(attempts=n)`` allows (``retries=n-1``); ``retry_condition_fn`` stops retries
on a contract violation; downstream tasks of a failed step do not run.

Prefect runs tasks in threads of the flow's process by default, so a killed process ends the
whole flow, and its ``ProcessPoolTaskRunner`` fails the flow when a pool process dies
(``BrokenProcessPool``, no retry). ``isolate=True`` runs each step body in one of our
supervised worker processes instead: a killed worker is recorded as ``worker_lost`` and
Prefect retries the step.

For tasks that keep their own code, :func:`reliable` adds the same hooks to a ``@task``::

    @reliable(hooks=[ChaosHook([...])])
    @task(retries=2)
    def clean(rows): ...
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from reliability._lazy import require
from reliability.adapters.core import AttemptNotRetryable, HostAttempt, Ref, StepBridge
from reliability.pipeline import Pipeline, StepHook

__all__ = ["reliable", "retry_condition", "to_flow"]


def retry_condition(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's ``retry_condition_fn``: no retry after :class:`AttemptNotRetryable`."""
    exc = state.data
    if not isinstance(exc, BaseException):
        try:
            exc = state.result(raise_on_failure=False)
        except Exception:  # an unreadable result: let Prefect's retries decide
            return True
    return not isinstance(exc, AttemptNotRetryable)


def _host_attempt(step: str, params: Mapping[str, Any] | None) -> HostAttempt:
    ctx = require("prefect.context", "prefect", "the Prefect adapter")
    run_ctx = ctx.TaskRunContext.get()
    if run_ctx is None:
        from reliability.errors import DefinitionError

        raise DefinitionError(f"step {step!r} was called outside a Prefect task run. "
                              "Fix: call it inside a flow")
    task_run = run_ctx.task_run
    attempt = max(1, int(task_run.run_count))
    flow_run = str(task_run.flow_run_id or task_run.id)
    return HostAttempt(host_run_id=flow_run, step=step, attempt=attempt,
                       retries_left=attempt <= int(run_ctx.task.retries or 0),
                       params=dict(params or {}))


def to_flow(pipeline: Pipeline | str, *, name: str | None = None,
            home: str | Path | None = None, hooks: Sequence[StepHook] = (),
            contracts: bool = True, sla: bool = True, isolate: bool = False,
            **flow_kwargs: Any) -> Any:
    """Build a Prefect ``Flow`` running ``pipeline``: one task per step.

    The flow takes one parameter, ``params`` (a dict validated by the pipeline's model),
    and returns ``{step: digest}`` of the committed outputs; it fails when a step fails.
    ``flow_kwargs`` go to ``prefect.flow`` (``task_runner``, ``log_prints``...). See
    :class:`~reliability.adapters.core.StepBridge` for the other options.
    """
    prefect = require("prefect", "prefect", "the Prefect adapter")
    from prefect.cache_policies import NO_CACHE

    bridge = StepBridge(pipeline, home=home, hooks=hooks, contracts=contracts, sla=sla,
                        isolate=isolate)
    pipe = bridge.pipeline
    tasks: dict[str, Any] = {}
    for step in bridge.order:
        spec = pipe.steps[step]
        delays = [bridge.retry_delay(step, n) for n in range(1, bridge.retries(step) + 1)]
        tasks[step] = prefect.task(
            _step_callable(bridge, step), name=step, retries=bridge.retries(step),
            retry_delay_seconds=delays or 0, retry_condition_fn=retry_condition,
            timeout_seconds=spec.timeout, cache_policy=NO_CACHE, persist_result=False)

    def run_pipeline(params: dict[str, Any] | None = None) -> dict[str, str]:
        futures: dict[str, Any] = {}
        for step in bridge.order:
            spec = pipe.steps[step]
            upstream = {dep: futures[dep] for dep in dict.fromkeys(spec.inputs.values())}
            after = [futures[d] for d in spec.after if d not in upstream]
            futures[step] = tasks[step].submit(upstream, params, wait_for=after)
        prefect.futures.wait(list(futures.values()))
        refs: dict[str, str] = {}
        for step, fut in futures.items():
            state = fut.state
            if state.is_completed():
                refs[step] = fut.result()["digest"]
        for fut in futures.values():
            if fut.state.is_failed():
                fut.result()  # raises the step's error: the flow run fails with it
        missing = [s for s in bridge.order if s not in refs]
        if missing:
            from reliability.errors import RunError

            raise RunError(f"steps {missing} did not run (an upstream step failed)")
        return refs

    run_pipeline.__name__ = run_pipeline.__qualname__ = pipe.name
    flow_kwargs.setdefault("persist_result", False)
    flow_kwargs.setdefault("description", pipe.description or f"pipeline {pipe.name}")
    return prefect.flow(run_pipeline, name=name or pipe.name, **flow_kwargs)


def _step_callable(bridge: StepBridge, step: str) -> Callable[..., Ref]:
    def run(upstream: Mapping[str, Ref], params: Mapping[str, Any] | None) -> Ref:
        return bridge.run_step(_host_attempt(step, params), upstream)

    run.__name__ = run.__qualname__ = step
    return run


_GUARDS: dict[tuple[str, str | None], StepBridge] = {}


def reliable(decorated: Any = None, *, home: str | Path | None = None,
             hooks: Sequence[StepHook] = (), contracts: bool = True,
             sla: bool = False) -> Any:
    """Add our contracts, chaos faults, ledger and metrics to an existing Prefect ``@task``.

    Put it above ``@task(...)``. The task keeps its code, return value and retries; each try
    is recorded in the ledger as an attempt of step ``<task name>`` of pipeline ``<flow
    name>``, its arguments are the step's inputs (by parameter name) and its return value
    the output. A contract violation quarantines the output and fails the task without a
    retry (``retry_condition_fn``).
    """

    def wrap(task: Any) -> Any:
        fn = getattr(task, "fn", None)
        if fn is None or not hasattr(task, "with_options"):
            from reliability.errors import DefinitionError

            raise DefinitionError(
                f"@reliable expects a Prefect @task, got {task!r}. Fix: put @reliable "
                "above @task(...)")
        step = str(task.name)
        attempts = int(task.retries or 0) + 1

        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            from prefect.runtime import flow_run

            pipeline = str(flow_run.flow_name or "prefect")
            key = (pipeline, str(home) if home is not None else None)
            bridge = _GUARDS.get(key)
            if bridge is None:
                bridge = _GUARDS[key] = StepBridge.for_tasks(
                    pipeline, home=home, hooks=hooks, contracts=contracts, sla=sla)
            if step not in bridge.pipeline.steps:
                bridge.register(fn, step, attempts=attempts)
            return bridge.guard(fn, _host_attempt(step, None), args, kwargs)

        new = task.with_options(retry_condition_fn=retry_condition)
        new.fn = guarded
        return new

    return wrap(decorated) if decorated is not None else wrap
