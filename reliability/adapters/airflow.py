"""Airflow 3 adapter: a :class:`~reliability.pipeline.Pipeline` as a DAG, and our hooks
around an existing ``@task``.

    # dags/reference.py (the DAG file Airflow parses)
    from reliability.adapters.airflow import to_dag
    dag = to_dag("pipelines.reference:pipeline", schedule=None)

One Airflow task per step, dependencies preserved. Each task calls the shared step wrapper
(:class:`~reliability.adapters.core.StepBridge`): our contracts, chaos faults, ledger,
metrics and SLA monitor run around the step, outputs go to our content-addressed store and
tasks pass each other its digests through XCom (a few bytes; no pyarrow, no dtype loss).
Airflow retries a step ``Retry(attempts=n)`` allows (``retries=n-1``); its ``retry_policy``
fails a contract violation at once (one attempt). A run's parameters are the DAG run's
``conf`` (``airflow dags trigger --conf '{...}'``), validated by the pipeline's model.

For tasks that keep their own code, :func:`reliable` adds the same hooks to an ``@task``::

    @reliable(hooks=[ChaosHook([...])])
    @task(retries=2)
    def clean(rows): ...
"""

from __future__ import annotations

import datetime as dt
import functools
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from reliability._lazy import require
from reliability.adapters.core import AttemptNotRetryable, HostAttempt, Ref, StepBridge
from reliability.pipeline import DataInterval, Pipeline, StepHook

__all__ = ["reliable", "retry_policy", "to_dag"]

_NOT_RETRYABLE = f"{AttemptNotRetryable.__module__}.{AttemptNotRetryable.__qualname__}"


def retry_policy() -> Any:
    """Airflow's ``retry_policy`` that fails a task at once on :class:`AttemptNotRetryable`
    (a contract violation, an error the step does not retry) and otherwise retries as
    configured. Declarative, so the scheduler can serialize it."""
    rp = require("airflow.sdk.definitions.retry_policy", "airflow", "the Airflow adapter")
    return rp.ExceptionRetryPolicy(rules=[rp.RetryRule(
        exception=_NOT_RETRYABLE, action=rp.RetryAction.FAIL,
        reason="reliability: not retryable (contract violation or excluded error)")])


def _host_attempt(step: str, ti: Any, dag_run: Any, params: Mapping[str, Any] | None
                  ) -> HostAttempt:
    conf = dict(params or {})
    conf.update(getattr(dag_run, "conf", None) or {})
    interval = None
    start = getattr(dag_run, "data_interval_start", None)
    end = getattr(dag_run, "data_interval_end", None)
    if start is not None and end is not None and end > start:
        interval = DataInterval(start, end)
    run_type = str(getattr(dag_run, "run_type", "manual"))
    trigger = {"scheduled": "schedule", "backfill": "backfill"}.get(
        run_type.rsplit(".", 1)[-1].lower(), "manual")
    return HostAttempt(host_run_id=str(dag_run.run_id), step=step,
                       attempt=int(ti.try_number), retries_left=ti.try_number <= ti.max_tries,
                       params=conf, interval=interval, trigger=trigger)


def to_dag(pipeline: Pipeline | str, *, dag_id: str | None = None,
           home: str | Path | None = None, hooks: Sequence[StepHook] = (),
           contracts: bool = True, sla: bool = True, isolate: bool = False,
           params: Mapping[str, Any] | None = None, **dag_kwargs: Any) -> Any:
    """Build an Airflow ``DAG`` running ``pipeline``: one task per step.

    ``params`` are default run parameters (a DAG run's ``conf`` overrides them);
    ``dag_kwargs`` go to ``airflow.sdk.DAG`` (``schedule``, ``start_date``, ``tags``...).
    See :class:`~reliability.adapters.core.StepBridge` for the other options.
    """
    sdk = require("airflow.sdk", "airflow", "the Airflow adapter")
    bridge = StepBridge(pipeline, home=home, hooks=hooks, contracts=contracts, sla=sla,
                        isolate=isolate)
    pipe = bridge.pipeline
    defaults = dict(params or {})
    dag_kwargs.setdefault("schedule", None)
    dag_kwargs.setdefault("start_date", dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    dag_kwargs.setdefault("catchup", False)
    dag_kwargs.setdefault("description", pipe.description or f"pipeline {pipe.name}")
    policy = retry_policy()
    with sdk.DAG(dag_id or pipe.name, **dag_kwargs) as dag:
        tasks: dict[str, Any] = {}
        for name in bridge.order:
            spec = pipe.steps[name]
            call = sdk.task(
                _step_callable(bridge, name, defaults), task_id=name,
                retries=bridge.retries(name),
                retry_delay=dt.timedelta(seconds=bridge.retry_delay(name)),
                retry_exponential_backoff=spec.retry.multiplier
                if spec.retry.multiplier > 1 and spec.retry.backoff > 0 else 0,
                max_retry_delay=dt.timedelta(seconds=spec.retry.max_backoff),
                execution_timeout=dt.timedelta(seconds=spec.timeout) if spec.timeout else None,
                retry_policy=policy, multiple_outputs=False)
            data = {dep: tasks[dep] for dep in dict.fromkeys(spec.inputs.values())}
            tasks[name] = call(upstream=data)
            for dep in spec.after:
                if dep not in data:
                    tasks[dep] >> tasks[name]
    # Airflow re-parses the file that built the DAG to run a task: the caller's, not ours
    dag.fileloc = sys._getframe(1).f_code.co_filename
    return dag


def _step_callable(bridge: StepBridge, step: str, defaults: Mapping[str, Any]
                   ) -> Callable[..., Ref]:
    def run(upstream: Mapping[str, Ref]) -> Ref:
        sdk = require("airflow.sdk", "airflow", "the Airflow adapter")
        context = sdk.get_current_context()
        at = _host_attempt(step, context["ti"], context["dag_run"], defaults)
        return bridge.run_step(at, upstream)

    run.__name__ = run.__qualname__ = step
    return run


_GUARDS: dict[tuple[str, str | None], StepBridge] = {}


def reliable(decorated: Any = None, *, home: str | Path | None = None,
             hooks: Sequence[StepHook] = (), contracts: bool = True,
             sla: bool = False) -> Any:
    """Add our contracts, chaos faults, ledger and metrics to an existing Airflow ``@task``.

    Put it above ``@task(...)``. The task keeps its code, its XCom and its retries; each try
    is recorded in the ledger as an attempt of step ``task_id`` of pipeline ``dag_id``, its
    arguments are the step's inputs (by parameter name) and its return value the output.
    A contract violation quarantines the output and fails the task without a retry.
    """

    def wrap(tdec: Any) -> Any:
        fn = getattr(tdec, "function", None)
        if fn is None or not hasattr(tdec, "override"):
            from reliability.errors import DefinitionError

            raise DefinitionError(
                f"@reliable expects an Airflow @task, got {tdec!r}. Fix: put @reliable "
                "above @task(...)")

        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            sdk = require("airflow.sdk", "airflow", "the Airflow adapter")
            context = sdk.get_current_context()
            ti, dag_run = context["ti"], context["dag_run"]
            key = (str(ti.dag_id), str(home) if home is not None else None)
            bridge = _GUARDS.get(key)
            if bridge is None:
                bridge = _GUARDS[key] = StepBridge.for_tasks(
                    str(ti.dag_id), home=home, hooks=hooks, contracts=contracts, sla=sla)
            if ti.task_id not in bridge.pipeline.steps:
                bridge.register(fn, str(ti.task_id), attempts=int(ti.max_tries) + 1)
            at = _host_attempt(str(ti.task_id), ti, dag_run, None)
            return bridge.guard(fn, at, args, kwargs)

        import attr

        return attr.evolve(tdec, function=guarded).override(retry_policy=retry_policy())

    return wrap(decorated) if decorated is not None else wrap
