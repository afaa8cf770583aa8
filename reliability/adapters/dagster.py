"""Dagster adapter: a :class:`~reliability.pipeline.Pipeline` as a Dagster job of ops or as
assets.

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

:func:`to_assets` makes one asset per step instead (the same bridge, retries and kill
recovery), with each step's data contract as a blocking asset check fed by our verdict::

    defs = to_definitions("pipelines.reference:pipeline")      # assets, resource, a job

A team's own ops keep their code: :func:`reliable` above ``@op`` runs each try through our
hooks and records it from inside the op; :func:`ledger_hooks` record the outcome of the
ops left unwrapped.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from reliability._lazy import require
from reliability._record import record
from reliability.adapters.core import (
    AttemptFailed,
    AttemptNotRetryable,
    HostAttempt,
    Ref,
    StepBridge,
    host_run_id,
    not_run_here,
)
from reliability.errors import DefinitionError
from reliability.pipeline import DataInterval, Pipeline, StepHook, source_version

__all__ = ["CONTRACT_CHECK", "PARAMS_RESOURCE", "ledger_hooks", "reliable", "resources",
           "run_config", "to_assets", "to_definitions", "to_job"]

PARAMS_RESOURCE = "reliability_params"
"""The resource whose config holds a run's parameters."""

_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def run_config(params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Dagster run config carrying the pipeline's run parameters."""
    return {"resources": {PARAMS_RESOURCE: {"config": dict(params or {})}}}


def _check_names(bridge: StepBridge) -> None:
    for step in bridge.order:
        if not _NAME.match(step):
            raise DefinitionError(
                f"step {step!r} of pipeline {bridge.pipeline.name!r} is not a valid Dagster "
                "name. Fix: name steps with letters, digits and underscores")


def _retry_policy(dg: Any, bridge: StepBridge, step: str) -> Any:
    """A step's ``Retry`` as Dagster's ``RetryPolicy``."""
    retry = bridge.spec(step).retry
    return dg.RetryPolicy(
        max_retries=bridge.retries(step), delay=retry.backoff or None,
        backoff=dg.Backoff.EXPONENTIAL if retry.multiplier > 1 and retry.backoff else None)


def _time_partitions(dg: Any, bridge: StepBridge, partitions_def: Any, where: str) -> Any:
    """``partitions_def`` when each of its partitions is a time window (a run's data
    interval); a DefinitionError for the others."""
    if partitions_def is None or isinstance(partitions_def,
                                            dg.TimeWindowPartitionsDefinition):
        return partitions_def
    raise DefinitionError(
        f"{where}(partitions_def={type(partitions_def).__name__}(...)) for pipeline "
        f"{bridge.pipeline.name!r}: its partitions are not time windows, so they cannot be "
        "a run's data interval (every partition would run on the same data). Fix: pass a "
        "time-window partitions definition (DailyPartitionsDefinition, "
        "HourlyPartitionsDefinition, TimeWindowPartitionsDefinition...), or give what "
        "varies from run to run as a run parameter (run_config(params))")


def resources() -> dict[str, Any]:
    """The resources the assets of :func:`to_assets` need: the run parameters'."""
    dg = require("dagster", "dagster", "the Dagster adapter")
    return {PARAMS_RESOURCE: dg.ResourceDefinition(
        resource_fn=lambda init: dict(init.resource_config or {}),
        config_schema=dg.Field(dg.Permissive(), is_required=False, default_value={}),
        description="run parameters of the pipeline (validated by its model)")}


def to_job(pipeline: Pipeline | str, *, name: str | None = None,
           home: str | Path | None = None, hooks: Sequence[StepHook] = (),
           contracts: bool = True, sla: bool = True, isolate: bool = False,
           **job_kwargs: Any) -> Any:
    """Build a Dagster ``JobDefinition`` running ``pipeline``: one op per step.

    ``job_kwargs`` go to ``GraphDefinition.to_job`` (``executor_def``, ``tags``,
    ``partitions_def``...); a job with a time-window partition runs each partition with
    that window as the data interval (other partitions definitions are refused). See
    :class:`~reliability.adapters.core.StepBridge` for the other options.
    """
    dg = require("dagster", "dagster", "the Dagster adapter")
    bridge = StepBridge(pipeline, home=home, hooks=hooks, contracts=contracts, sla=sla,
                        isolate=isolate)
    _check_names(bridge)
    _time_partitions(dg, bridge, job_kwargs.get("partitions_def"), "to_job")
    pipe = bridge.pipeline
    ops: list[Any] = []
    deps: dict[str, dict[str, Any]] = {}
    for step in bridge.order:
        spec = pipe.steps[step]
        data = list(dict.fromkeys(spec.inputs.values()))
        order = [d for d in spec.after if d not in data]
        ins = {d: dg.In(dict) for d in data}
        ins.update({f"after_{d}": dg.In(dg.Nothing) for d in order})
        tags = {"reliability/step": step}
        ops.append(dg.op(name=step, ins=ins, out=dg.Out(dict),
                         retry_policy=_retry_policy(dg, bridge, step),
                         required_resource_keys={PARAMS_RESOURCE}, tags=tags,
                         description=(spec.fn.__doc__ or "").strip() or None)(
            _op_body(bridge, step, data)))
        deps[step] = {d: dg.DependencyDefinition(d) for d in data}
        deps[step].update({f"after_{d}": dg.DependencyDefinition(d) for d in order})
    graph = dg.GraphDefinition(name=name or pipe.name.replace("-", "_"), node_defs=ops,
                               dependencies=deps,
                               description=pipe.description or f"pipeline {pipe.name}")
    return graph.to_job(resource_defs={**resources(), **job_kwargs.pop("resource_defs", {})},
                        **job_kwargs)


def _host_attempt(bridge: StepBridge, step: str, context: Any, *, retries: int | None = None,
                  params: bool = True) -> HostAttempt:
    """Attempt ``context.retry_number + 1`` of ``step`` in the run of ``context``: its data
    interval from a time-window partition, its trigger from a schedule's or backfill's tag,
    its parameters from the params resource (for the steps of our pipelines)."""
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
        if window is not None:  # HostAttempt hands it on in UTC, as our runner does
            interval = DataInterval(window.start, window.end)
    values = dict(getattr(context.resources, PARAMS_RESOURCE) or {}) if params else None
    retries = bridge.retries(step) if retries is None else retries
    return HostAttempt(host_run_id=str(context.run_id), step=step, attempt=retry_number + 1,
                       retries_left=retry_number < retries, params=values, interval=interval,
                       trigger=trigger)


def _op_body(bridge: StepBridge, step: str, data: Sequence[str]) -> Callable[..., Ref]:
    # Dagster refuses a ``context`` annotated other than with its own context types
    def run(context, **upstream: Any) -> Ref:  # type: ignore[no-untyped-def]
        refs = {d: upstream[d] for d in data}
        try:
            return bridge.run_step(_host_attempt(bridge, step, context), refs)
        except AttemptNotRetryable as exc:
            raise _failure(exc) from exc

    run.__name__ = run.__qualname__ = step
    return run


# -- assets ------------------------------------------------------------------------------
CONTRACT_CHECK = "contract"
"""The name of the blocking asset check of a step that has a data contract."""


def to_assets(pipeline: Pipeline | str, *, key_prefix: str | Sequence[str] | None = None,
              group_name: str | None = None, home: str | Path | None = None,
              hooks: Sequence[StepHook] = (), contracts: bool = True, sla: bool = True,
              isolate: bool = False, partitions_def: Any = None) -> list[Any]:
    """Build Dagster assets running ``pipeline``: one asset per step, keyed by the step's
    name (under ``key_prefix``), its data inputs as the asset's upstream assets.

    A step with a data contract (the project's, or a
    :class:`~reliability.contracts.ContractHook` among ``hooks``) gets a blocking asset
    check named ``contract`` whose result is the verdict our contract hook recorded in
    the ledger for that attempt; a failed check materializes nothing (the output is
    quarantined) and stops the downstream assets. The run parameters come from the
    :func:`resources` resource configured by :func:`run_config`::

        dagster.materialize(to_assets(p), resources=resources(),
                            run_config=run_config(params))

    ``partitions_def`` (a time-window partitions definition, e.g.
    ``DailyPartitionsDefinition("2026-01-01")``) partitions every asset: materializing a
    partition is a run of ours whose data interval is the partition's time window (what
    steps read as ``ctx.interval``, in UTC), so its outputs are those of
    ``Runner.run(params, interval=...)`` for that window; with no backfill policy (Dagster's
    default) a backfill runs one partition per run::

        dagster.materialize(to_assets(p, partitions_def=daily), partition_key="2026-01-02",
                            resources=resources())

    Partitions that are not time windows (static, dynamic, multi-dimensional) are refused
    with a :class:`~reliability.errors.DefinitionError`.

    :func:`to_definitions` adds the resource and a job (for other executors).
    """
    dg = require("dagster", "dagster", "the Dagster adapter")
    bridge = StepBridge(pipeline, home=home, hooks=hooks, contracts=contracts, sla=sla,
                        isolate=isolate)
    _check_names(bridge)
    partitions_def = _time_partitions(dg, bridge, partitions_def, "to_assets")
    pipe = bridge.pipeline
    prefix = [key_prefix] if isinstance(key_prefix, str) else list(key_prefix or [])
    checked = _contract_steps(bridge)
    assets: list[Any] = []
    for step in bridge.order:
        spec = pipe.steps[step]
        key = dg.AssetKey([*prefix, step])
        data = list(dict.fromkeys(spec.inputs.values()))
        order = [dg.AssetKey([*prefix, d]) for d in spec.after if d not in data]
        checks = [dg.AssetCheckSpec(CONTRACT_CHECK, asset=key, blocking=True,
                                    description=f"data contract of step {step!r}")
                  ] if step in checked else []
        assets.append(dg.asset(
            key=key, ins={d: dg.AssetIn(key=dg.AssetKey([*prefix, d])) for d in data},
            deps=order, check_specs=checks, retry_policy=_retry_policy(dg, bridge, step),
            output_required=False, group_name=group_name, partitions_def=partitions_def,
            required_resource_keys={PARAMS_RESOURCE},
            op_tags={"reliability/step": step}, code_version=source_version(spec.fn),
            description=(spec.fn.__doc__ or "").strip() or None)(
            _asset_body(bridge, step, data, key if checks else None)))
    return assets


def to_definitions(pipeline: Pipeline | str, *, job_name: str | None = None,
                   executor_def: Any = None, **options: Any) -> Any:
    """``dagster.Definitions`` holding :func:`to_assets` ``(pipeline, **options)`` and a job
    materializing all of them (named after the pipeline, or ``job_name``), run by
    ``executor_def`` (Dagster's default: the multiprocess executor on a persistent
    instance)."""
    dg = require("dagster", "dagster", "the Dagster adapter")
    if isinstance(pipeline, str):
        from reliability.pipeline import load_pipeline

        pipeline = load_pipeline(pipeline)
    assets = to_assets(pipeline, **options)
    name = job_name or pipeline.name.replace("-", "_")
    return dg.Definitions(assets=assets, resources=resources(), jobs=[dg.define_asset_job(
        name, selection=dg.AssetSelection.assets(*assets), executor_def=executor_def)])


def _contract_steps(bridge: StepBridge) -> set[str]:
    """Steps whose data a contract checks: the project's contracts (what the session's
    assembly loads) and those of contract hooks among the bridge's own hooks."""
    from reliability.contracts import ContractHook

    found = [c.step for h in bridge.extra_hooks if isinstance(h, ContractHook)
             for c in h.contracts]
    if bridge.contracts:
        from reliability.contracts import load_contracts
        from reliability.project import find_project

        directory = find_project().contracts_dir
        if directory.is_dir():
            found += [c.step for c in load_contracts(directory, bridge.pipeline)]
    return set(found) & set(bridge.order)


def _verdict(bridge: StepBridge, run_id: str, step: str, attempt: int) -> Any:
    """The contract verdict the ledger holds for one attempt, as an ``AssetCheckResult``
    (None when no contract of the step ran)."""
    dg = require("dagster", "dagster", "the Dagster adapter")
    checked: list[str] = []
    ledger = bridge.session().ledger
    for ev in [*ledger.events(run_id, "contract_violated"),
               *ledger.events(run_id, "contract_checked")]:
        if ev["step"] != step or ev["attempt"] != attempt:
            continue
        details = ev["details"]
        if ev["kind"] == "contract_violated":
            failures = list(details.get("failures") or [])
            return dg.AssetCheckResult(
                check_name=CONTRACT_CHECK, passed=False,
                severity=dg.AssetCheckSeverity.ERROR, metadata={
                    "verdict": "violated", "reliability_run": run_id, "attempt": attempt,
                    "failures": dg.MetadataValue.json(failures),
                    "broken": ", ".join(sorted({f"{f.get('column') or '(table)'}: "
                                                f"{f.get('check')}" for f in failures})),
                    "quarantined": details.get("quarantined") or "",
                    "error": str(details.get("error", ""))[:2000]})
        if ev["kind"] == "contract_checked":
            checked.append(f"{details.get('contract')} ({details.get('direction')})")
    if not checked:
        return None
    return dg.AssetCheckResult(check_name=CONTRACT_CHECK, passed=True, metadata={
        "verdict": "passed", "reliability_run": run_id, "attempt": attempt,
        "contracts": ", ".join(checked)})


def _asset_body(bridge: StepBridge, step: str, data: Sequence[str], checked: Any
                ) -> Callable[..., Any]:
    dg = require("dagster", "dagster", "the Dagster adapter")

    def run(context, **upstream: Any) -> Any:  # type: ignore[no-untyped-def]
        at = _host_attempt(bridge, step, context)
        try:
            ref = bridge.run_step(at, {d: upstream[d] for d in data})
        except AttemptNotRetryable as exc:
            verdict = None
            if checked is not None and exc.run_id:
                verdict = _verdict(bridge, exc.run_id, step, exc.attempt)
            if verdict is None or verdict.passed:
                raise _failure(exc) from exc
            # no materialization: the failed blocking check fails the step, without a
            # retry, and Dagster skips the downstream assets
            yield verdict
            return
        run_id = host_run_id(bridge.pipeline.name, at.host_run_id)
        yield dg.Output(ref, metadata={"digest": ref["digest"], "codec": ref["codec"],
                                       "reliability_run": run_id})
        if checked is not None:
            verdict = _verdict(bridge, run_id, step, at.attempt)
            if verdict is not None:
                yield verdict

    run.__name__ = run.__qualname__ = step
    return run


def _failure(exc: AttemptNotRetryable) -> Exception:
    dg = require("dagster", "dagster", "the Dagster adapter")
    failure: Exception = dg.Failure(description=str(exc), allow_retries=False, metadata={
        "error_type": exc.error_type, "reliability_run": exc.run_id or ""})
    return failure


# -- a team's own ops ----------------------------------------------------------------------
_GUARDS: dict[tuple[Any, ...], StepBridge] = {}


def _task_bridge(job: str, home: str | Path | None, hooks: Sequence[StepHook],
                 contracts: bool, sla: bool) -> StepBridge:
    """This process's bridge for the team's own ops of job ``job`` with these options."""
    key = (job, str(home) if home is not None else None, tuple(map(id, hooks)), contracts,
           sla)
    found = _GUARDS.get(key)
    if found is None:
        found = _GUARDS[key] = StepBridge.for_tasks(job, home=home, hooks=hooks,
                                                    contracts=contracts, sla=sla)
    return found


_PLANS: dict[str, dict[str, list[str]]] = {}  # this process's last run's plan


def _plan(instance: Any, run_id: str) -> dict[str, list[str]]:
    """The run's steps (Dagster step keys), each with the steps it reads from."""
    plan = _PLANS.get(run_id)
    if plan is None:
        run = instance.get_run_by_id(run_id)
        snap = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
        plan = {s.key: sorted({h.step_key for i in s.inputs for h in i.upstream_output_handles})
                for s in snap.steps}
        _PLANS.clear()
        _PLANS[run_id] = plan
    return plan


def _register(bridge: StepBridge, fn: Callable[..., Any], step: str,
              plan: Mapping[str, Sequence[str]], attempts: int, inputs: Sequence[str]) -> None:
    """Describe the job's steps to ``bridge`` (once; each after the steps it reads from, so
    a failure marks those downstream ``upstream_failed``), ``step`` as ``fn``."""
    for other, upstream in plan.items():
        if other not in bridge.pipeline.steps:
            bridge.register(not_run_here, other, inputs=[], after=upstream)
    if bridge.spec(step).fn is not fn:
        bridge.register(fn, step, attempts=attempts, inputs=inputs, after=plan.get(step, ()))


def reliable(decorated: Any = None, *, home: str | Path | None = None,
             hooks: Sequence[StepHook] = (), contracts: bool = True,
             sla: bool = False) -> Any:
    """Add our contracts, chaos faults, ledger and metrics to a team's own Dagster ``@op``.

    Put it above ``@op(...)``. The op keeps its name, inputs, outputs, config, resources
    and ``RetryPolicy``; each try runs its code between
    :meth:`~reliability.adapters.core.StepBridge.begin` and the attempt's ``end`` as an
    attempt of step ``<op>`` of pipeline ``<job name>`` (its inputs by name, its return
    value the output; a time-window partition is the data interval;
    contracts under ``contracts/<job>/<op>.*.yaml``). Every try is recorded from inside the
    op, including those Dagster retries (on which its failure hooks do not fire). A
    contract violation quarantines the output and raises ``Failure(allow_retries=False)``.
    Generator ops (yielding outputs or events) are not supported.
    """
    import functools
    import inspect

    def wrap(op_def: Any) -> Any:
        dg = require("dagster", "dagster", "the Dagster adapter")
        fn = getattr(getattr(op_def, "compute_fn", None), "decorated_fn", None)
        if not isinstance(op_def, dg.OpDefinition) or fn is None:
            raise DefinitionError(f"@reliable expects a Dagster @op, got {op_def!r}. Fix: put "
                                  "@reliable above @op(...)")
        if inspect.isgeneratorfunction(fn):
            raise DefinitionError(f"op {op_def.name!r} yields its outputs; @reliable wraps ops "
                                  "that return them. Fix: return the value")
        sig = inspect.signature(fn)
        inputs = list(op_def.ins)  # the step's inputs: not context, config or resources

        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            context = dg.OpExecutionContext.get()
            step = str(context.op_handle)
            bridge = _task_bridge(context.job_name, home, hooks, contracts, sla)
            policy = context.op_def.retry_policy or context.get_step_execution_context(
                ).op_retry_policy
            retries = int(policy.max_retries) if policy is not None else 0
            plan = _plan(context.instance, context.run_id)
            _register(bridge, fn, step, plan, retries + 1, inputs)
            at = _host_attempt(bridge, step, context, retries=retries, params=False)
            given: dict[str, Any] = {}
            for name, value in sig.bind(*args, **kwargs).arguments.items():
                if sig.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                    given.update(value)  # an op taking its inputs as **kwargs
                else:
                    given[name] = value
            rest = {k: v for k, v in given.items() if k not in inputs}
            try:
                attempt = bridge.begin(at, {k: given[k] for k in inputs if k in given},
                                       run_steps=list(plan))
                try:
                    output = fn(**rest, **attempt.inputs)
                except Exception as exc:
                    attempt.fail(exc)
                return attempt.end(output)
            except AttemptNotRetryable as exc:
                raise _failure(exc) from exc

        return dg.op(name=op_def.name, ins=dict(op_def.ins),
                     out=op_def.outs["result"] if list(op_def.outs) == ["result"]
                     else dict(op_def.outs),
                     config_schema=op_def.config_schema, description=op_def.description,
                     required_resource_keys=set(op_def.required_resource_keys),
                     tags=dict(op_def.tags), retry_policy=op_def.retry_policy,
                     code_version=op_def.version, pool=op_def.pool)(guarded)

    return wrap(decorated) if decorated is not None else wrap


def ledger_hooks(*, home: str | Path | None = None, sla: bool = False) -> set[Any]:
    """Dagster success and failure hooks that record each op's outcome in our ledger.

    For the ops of a job that are not wrapped by :func:`reliable` (``@job(hooks=
    ledger_hooks())`` or ``my_op.with_hooks(ledger_hooks())``): when an op ends, its tries
    are recorded as attempts of step ``<op>`` of pipeline ``<job name>`` -- the tries
    Dagster retried (its failure hook does not fire on those) from the run's event log with
    their errors, then the last one with its outcome and output (committed to our store).
    A retried try whose process died (Dagster, not the op, reported its end: the
    multiprocess executor's ``ChildProcessCrashException`` for a SIGKILLed step process) is
    ``worker_lost``, with the pid that started it. The hooks run after the op, in its
    process, so they check no contracts and inject no faults, the attempts' times are when
    the hook ran, and a last try whose process died is not recorded. For a
    :func:`reliable` op the attempts are recorded from inside it already; the failure hook
    records only a step Dagster failed after the op returned (its type check or IO manager
    refused the output).
    """
    dg = require("dagster", "dagster", "the Dagster adapter")

    def succeeded(context: Any) -> None:
        _record_outcome(context, home, sla, failed=False)

    def failed(context: Any) -> None:
        _record_outcome(context, home, sla, failed=True)

    return {dg.success_hook(name="reliability_success")(succeeded),
            dg.failure_hook(name="reliability_failure")(failed)}


class _RetriedTry(Exception):
    """A try Dagster retried, as its event log describes it."""


@record(frozen=True)
class _Try:
    """One try of a step Dagster retried, from the run's event log: the process that
    started it (``pid``, at ``started``), the error Dagster retried it on, and whether its
    process died (Dagster, not the op, reported the end: a crashed step process)."""

    pid: int | None
    started: float | None
    error: Any
    died: bool
    crash: str


_CRASHED = "ChildProcessCrashException"  # the multiprocess executor's dead step process


def _retried_tries(context: Any, step: str) -> list[_Try]:
    """The tries of ``step`` Dagster retried in the run of ``context``, in order."""
    dg = require("dagster", "dagster", "the Dagster adapter")
    kind = dg.DagsterEventType
    tries: list[_Try] = []
    if not any(e.dagster_event is not None and e.dagster_event.step_key == step
               for e in context.instance.all_logs(context.run_id,
                                                  of_type=kind.STEP_UP_FOR_RETRY)):
        return tries  # the common case: one try, and no more of the log to read
    pid: int | None = None
    started: float | None = None
    crash = ""
    for entry in context.instance.all_logs(context.run_id, of_type={
            kind.STEP_START, kind.STEP_UP_FOR_RETRY, kind.ENGINE_EVENT}):
        ev = entry.dagster_event
        if ev is None or ev.step_key != step:
            continue
        if ev.event_type == kind.STEP_START:
            pid, started = ev.pid, entry.timestamp
        elif ev.event_type == kind.ENGINE_EVENT:
            error = getattr(ev.event_specific_data, "error", None)
            if error is not None and error.cls_name == _CRASHED:
                crash = str(ev.message or "")  # Dagster's account of the dead process
        else:
            error = ev.event_specific_data.error
            # the op's own failure is reported by the process that ran it
            died = (error is not None and error.cls_name == _CRASHED) or (
                pid is not None and ev.pid is not None and ev.pid != pid)
            tries.append(_Try(pid, started, error, died, crash))
            pid = started = None
            crash = ""
    return tries


def _record_outcome(context: Any, home: str | Path | None, sla: bool, *,
                    failed: bool) -> None:
    step = str(context.step_key)
    bridge = _task_bridge(context.job_name, home, (), False, sla)
    retried = _retried_tries(context, step)
    last = len(retried) + 1
    plan = _plan(context.instance, context.run_id)
    fn = getattr(context.op.definition.compute_fn, "decorated_fn", None) or not_run_here
    _register(bridge, fn, step, plan, last, [])
    s = bridge.session()
    run_id = host_run_id(context.job_name, context.run_id)
    recorded = {a["attempt"]: a["status"] for a in s.ledger.attempts(run_id, step)}
    if last in recorded:  # a reliable op: its tries are recorded from inside it
        if failed and recorded[last] == "succeeded":
            # Dagster failed the step after the op returned: its type check or IO manager
            # refused the output our ledger committed
            exc = context.op_exception
            bridge.fail_step(str(context.run_id), step, last,
                             exc if exc is not None else RuntimeError("failed by Dagster"))
        return
    for n, tried in enumerate(retried, start=1):
        at = HostAttempt(str(context.run_id), step, n, True)
        error = tried.error
        if tried.died:
            said = (tried.crash or (error.message.strip() if error else "")).rstrip(".")
            who = f" (pid {tried.pid})" if tried.pid else ""
            bridge.lost(at, tried.pid, f"the process running try {n}{who} died before it "
                        f"ended: {said or 'no outcome reported'}; Dagster retried the step",
                        started=tried.started, run_steps=list(plan))
            continue
        while error is not None and error.cause is not None:  # the op's own exception
            error = error.cause
        name = error.cls_name if error else "Error"
        message = error.message.strip() if error else "retried by Dagster"
        retried_try = type(name, (_RetriedTry,), {})(message.removeprefix(f"{name}:").strip())
        attempt = bridge.begin(at, {}, run_steps=list(plan))
        with contextlib.suppress(AttemptFailed):
            attempt.fail(retried_try)
    attempt = bridge.begin(HostAttempt(str(context.run_id), step, last, False), {},
                           run_steps=list(plan))
    if failed:
        with contextlib.suppress(AttemptFailed):
            attempt.fail(context.op_exception or RuntimeError("the op failed"))
        return
    values = dict(context.op_output_values)
    attempt.end(values["result"] if list(values) == ["result"] else values)
