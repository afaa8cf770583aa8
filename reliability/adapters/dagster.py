"""Dagster adapter: a :class:`~reliability.pipeline.Pipeline` as a Dagster job of ops.

    # definitions.py (what ``dagster dev`` / ``dagster job execute`` loads)
    from reliability.adapters.dagster import to_job
    job = to_job("pipelines.reference:pipeline")

    job.execute_in_process(run_config=run_config({"seed": 3}))

One op per step, dependencies preserved (an ``after`` dependency is a ``Nothing`` input).
Each op calls the shared step wrapper (:class:`~reliability.adapters.core.StepBridge`): our
contracts, chaos faults, ledger, metrics and SLA monitor run around the step, outputs go
to our content-addressed store and ops hand each other its digests (a few bytes through
Dagster's IO manager; no DataFrames pickled by Dagster). A step's ``Retry(attempts=n)``
becomes the op's ``RetryPolicy(max_retries=n-1)``; a contract violation, an error the
step does not retry or the last try raises ``Failure(allow_retries=False)``, so Dagster
does not retry it and skips the downstream ops. The run's parameters are the ``params``
resource's config (:func:`run_config`), validated by the pipeline's model.

Under Dagster's multiprocess executor (the default for runs launched on a persistent
instance) each op runs in its own process: a SIGKILLed op process is retried by the
``RetryPolicy``, and the next try records the lost one as ``worker_lost`` in our ledger.
Dagster has no per-op timeout: ``isolate=True`` enforces a step's ``timeout`` (the body runs
in one of our supervised workers, killed when it runs over).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from reliability._lazy import require
from reliability.adapters.core import AttemptNotRetryable, HostAttempt, Ref, StepBridge
from reliability.errors import DefinitionError
from reliability.pipeline import DataInterval, Pipeline, StepHook

__all__ = ["PARAMS_RESOURCE", "run_config", "to_job"]

PARAMS_RESOURCE = "reliability_params"
"""The resource whose config holds a run's parameters."""

_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def run_config(params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Dagster run config carrying the pipeline's run parameters."""
    return {"resources": {PARAMS_RESOURCE: {"config": dict(params or {})}}}


def to_job(pipeline: Pipeline | str, *, name: str | None = None,
           home: str | Path | None = None, hooks: Sequence[StepHook] = (),
           contracts: bool = True, sla: bool = True, isolate: bool = False,
           **job_kwargs: Any) -> Any:
    """Build a Dagster ``JobDefinition`` running ``pipeline``: one op per step.

    ``job_kwargs`` go to ``GraphDefinition.to_job`` (``executor_def``, ``tags``,
    ``partitions_def``...); a job with a time-window partition runs each partition with
    that window as the data interval. See :class:`~reliability.adapters.core.StepBridge`
    for the other options.
    """
    dg = require("dagster", "dagster", "the Dagster adapter")
    bridge = StepBridge(pipeline, home=home, hooks=hooks, contracts=contracts, sla=sla,
                        isolate=isolate)
    pipe = bridge.pipeline
    for step in bridge.order:
        if not _NAME.match(step):
            raise DefinitionError(
                f"step {step!r} of pipeline {pipe.name!r} is not a valid Dagster op name. "
                "Fix: name steps with letters, digits and underscores")
    ops: list[Any] = []
    deps: dict[str, dict[str, Any]] = {}
    for step in bridge.order:
        spec = pipe.steps[step]
        data = list(dict.fromkeys(spec.inputs.values()))
        order = [d for d in spec.after if d not in data]
        ins = {d: dg.In(dict) for d in data}
        ins.update({f"after_{d}": dg.In(dg.Nothing) for d in order})
        retry = spec.retry
        policy = dg.RetryPolicy(
            max_retries=bridge.retries(step), delay=retry.backoff or None,
            backoff=dg.Backoff.EXPONENTIAL if retry.multiplier > 1 and retry.backoff
            else None)
        tags = {"reliability/step": step}
        ops.append(dg.op(name=step, ins=ins, out=dg.Out(dict), retry_policy=policy,
                         required_resource_keys={PARAMS_RESOURCE}, tags=tags,
                         description=(spec.fn.__doc__ or "").strip() or None)(
            _op_body(bridge, step, data)))
        deps[step] = {d: dg.DependencyDefinition(d) for d in data}
        deps[step].update({f"after_{d}": dg.DependencyDefinition(d) for d in order})
    graph = dg.GraphDefinition(name=name or pipe.name.replace("-", "_"), node_defs=ops,
                               dependencies=deps,
                               description=pipe.description or f"pipeline {pipe.name}")
    params = dg.ResourceDefinition(
        resource_fn=lambda init: dict(init.resource_config or {}),
        config_schema=dg.Field(dg.Permissive(), is_required=False, default_value={}),
        description="run parameters of the pipeline (validated by its model)")
    resources = {PARAMS_RESOURCE: params, **job_kwargs.pop("resource_defs", {})}
    return graph.to_job(resource_defs=resources, **job_kwargs)


def _host_attempt(bridge: StepBridge, step: str, context: Any) -> HostAttempt:
    retry_number = int(context.retry_number)
    tags = dict(context.run.tags or {})
    trigger = ("schedule" if "dagster/schedule_name" in tags
               else "backfill" if "dagster/backfill" in tags else "manual")
    interval = None
    if context.has_partition_key:
        try:
            window = context.partition_time_window
        except Exception:  # a partition that is not a time window: no data interval
            window = None
        if window is not None:
            interval = DataInterval(window.start, window.end)
    params = getattr(context.resources, PARAMS_RESOURCE)
    return HostAttempt(host_run_id=str(context.run_id), step=step, attempt=retry_number + 1,
                       retries_left=retry_number < bridge.retries(step),
                       params=dict(params or {}), interval=interval, trigger=trigger)


def _op_body(bridge: StepBridge, step: str, data: Sequence[str]) -> Callable[..., Ref]:
    dg = require("dagster", "dagster", "the Dagster adapter")

    # Dagster refuses a ``context`` annotated other than with its own context types
    def run(context, **upstream: Any) -> Ref:  # type: ignore[no-untyped-def]
        refs = {d: upstream[d] for d in data}
        try:
            return bridge.run_step(_host_attempt(bridge, step, context), refs)
        except AttemptNotRetryable as exc:
            raise dg.Failure(description=str(exc), allow_retries=False,
                             metadata={"error_type": exc.error_type,
                                       "reliability_run": exc.run_id or ""}) from exc

    run.__name__ = run.__qualname__ = step
    return run
