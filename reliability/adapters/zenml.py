"""ZenML adapter: a :class:`~reliability.pipeline.Pipeline` as a ZenML pipeline of steps, and
our hooks around a team's own ZenML ``@step``.

    from reliability.adapters.zenml import to_pipeline
    reference = to_pipeline("pipelines.reference:pipeline")
    reference(params={"seed": 3})          # runs on the active stack

One ZenML step per step, dependencies preserved (each step invocation is named after the
pipeline step). Each step calls the shared step wrapper
(:class:`~reliability.adapters.core.StepBridge`): our contracts, chaos faults, ledger,
metrics and SLA monitor run around the step, outputs go to our content-addressed store and
steps hand each other a :class:`StoreRef` (the digest), which
``zenml_steps.StoreRefMaterializer`` writes as a small JSON artifact: no DataFrame goes
through ZenML's CSV materializer, no dtype is lost. ``Retry(attempts=n)`` becomes
``StepRetryConfig(max_retries=n-1)``. ZenML retries every exception, so a retry after a
contract violation (or an error the step does not retry) is refused at once without running
the step: the ledger holds one attempt, the run fails and the downstream steps do not run.

Each step carries the pipeline's ``module:attr`` reference and the bridge's options as step
parameters, so a step that ZenML runs in another process (an orchestrator that starts a
process or a container per step) rebuilds its bridge there; hooks travel as a
``module:attr`` reference too (hook objects exist only in the process that built the
pipeline).

ZenML's local orchestrator runs steps in the pipeline's own process, so a SIGKILL of that
process ends the run. ``isolate=True`` runs each step body in one of our supervised worker
processes: a killed worker is recorded as ``worker_lost`` and ZenML retries the step.

For steps that keep their own code, :func:`reliable` adds the same hooks to a ``@step``::

    @reliable(hooks="myproject.chaos:hooks")
    @step(retry=StepRetryConfig(max_retries=2))
    def clean(rows: list[float]) -> dict[str, float]: ...
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reliability._lazy import require
from reliability.adapters.core import HostAttempt, StepBridge, load_hooks
from reliability.errors import DefinitionError
from reliability.pipeline import Pipeline, StepHook

__all__ = ["MAX_INPUTS", "StoreRef", "reliable", "run_step", "to_pipeline"]

MAX_INPUTS = 6
"""Upstream steps one step may read."""


class StoreRef(dict[str, str]):
    """What one ZenML step hands the next: ``{"step", "digest", "codec"}`` of our store."""


_BRIDGES: dict[str, StepBridge] = {}
_COUNT = itertools.count(1)


def host_attempt(step: str, params: dict[str, Any] | None = None) -> HostAttempt:
    """The try ZenML is making of ``step`` (its step run's version and whether ZenML will
    retry it), read from the running step's context."""
    from zenml import get_step_context

    ctx = get_step_context()
    run = ctx.step_run
    return HostAttempt(host_run_id=str(ctx.pipeline_run.id), step=step,
                       attempt=max(1, int(run.version)), retries_left=bool(run.is_retriable),
                       params=params, host_filters_errors=False)  # StepRetryConfig: all


def bridge_for(key: str, pipeline: str | None, options: dict[str, Any]) -> StepBridge:
    """The bridge of a generated pipeline's step: the one built with the pipeline in this
    process, else one rebuilt from the pipeline's ``module:attr`` reference and options."""
    found = _BRIDGES.get(key)
    if found is not None:
        return found
    if not pipeline:
        raise DefinitionError(
            f"a step of {key} runs in a process where its pipeline was not built, and the "
            "pipeline has no 'module:attr' reference. Fix: pass to_pipeline the pipeline "
            "as 'module:attr' (or define it at module level)")
    opts = dict(options)
    if opts.pop("hook_objects", False):
        raise DefinitionError(
            f"pipeline {pipeline!r} was built with hook objects, which exist only in the "
            "process that built it, and ZenML runs this step in another process. Fix: "
            "pass hooks='module:attr' naming a list of step hooks")
    hooks = opts.pop("hooks", None)
    found = _BRIDGES[key] = StepBridge(pipeline, hooks=load_hooks(hooks) if hooks else (),
                                       **opts)
    return found


def run_step(key: str, step: str, params: dict[str, Any], upstream: Sequence[Any],
             pipeline: str | None = None, options: dict[str, Any] | None = None) -> StoreRef:
    """The ZenML step's body: one attempt of ``step`` through bridge ``key``."""
    bridge = bridge_for(key, pipeline, options or {})
    refs = {r["step"]: dict(r) for r in upstream if r}
    return StoreRef(bridge.run_step(host_attempt(step, params), refs))


def pipeline_reference(pipeline: Pipeline) -> str | None:
    """``module:attr`` of a Pipeline defined at module level (where its steps are), or
    None."""
    import sys

    for module_name in dict.fromkeys(spec.fn.__module__ for spec in pipeline.steps.values()):
        module = sys.modules.get(module_name)
        if module is None or module_name == "__main__":
            continue
        for attr, value in vars(module).items():
            if value is pipeline:
                return f"{module_name}:{attr}"
    return None


def to_pipeline(pipeline: Pipeline | str, *, name: str | None = None,
                home: str | Path | None = None, hooks: Sequence[StepHook] | str = (),
                contracts: bool = True, sla: bool = True, isolate: bool = False,
                **pipeline_kwargs: Any) -> Any:
    """Build a ZenML pipeline running ``pipeline`` (a Pipeline or ``"module:attr"``): one
    step per step. It takes one parameter, ``params`` (a dict validated by the pipeline's
    model). ``hooks`` is a list of step hooks or a ``"module:attr"`` reference to one (a
    reference also works where ZenML runs steps in other processes). ``pipeline_kwargs`` go
    to ``zenml.pipeline``. See :class:`StepBridge` for the other options."""
    zenml = require("zenml", "zenml", "the ZenML adapter")
    from zenml.config.retry_config import StepRetryConfig

    from reliability.adapters.zenml_steps import reliability_step

    hook_list = load_hooks(hooks) if isinstance(hooks, str) else list(hooks)
    bridge = StepBridge(pipeline, home=home, hooks=hook_list, contracts=contracts, sla=sla,
                        isolate=isolate)
    pipe = bridge.pipeline
    ref = pipeline if isinstance(pipeline, str) else pipeline_reference(pipe)
    options: dict[str, Any] = {
        "home": str(Path(home).resolve()) if home is not None else None,
        "hooks": hooks if isinstance(hooks, str) else None,
        "contracts": contracts, "sla": sla, "isolate": isolate}
    if hook_list and not isinstance(hooks, str):
        options["hook_objects"] = True
    key = f"{pipe.name}#{next(_COUNT)}"
    _BRIDGES[key] = bridge
    steps: dict[str, Any] = {}
    for step in bridge.order:
        spec = pipe.steps[step]
        if len(dict.fromkeys(spec.inputs.values())) > MAX_INPUTS:
            raise DefinitionError(
                f"step {step!r} of pipeline {pipe.name!r} reads more than {MAX_INPUTS} "
                "upstream steps. Fix: combine inputs in an intermediate step")
        retry = None
        if bridge.retries(step):
            retry = StepRetryConfig(max_retries=bridge.retries(step),
                                    delay=int(spec.retry.backoff),
                                    backoff=int(spec.retry.multiplier)
                                    if spec.retry.backoff else 0)
        steps[step] = reliability_step.with_options(retry=retry)

    def build(params: dict[str, Any] | None = None) -> None:
        outs: dict[str, Any] = {}
        for step in bridge.order:
            spec = pipe.steps[step]
            data = list(dict.fromkeys(spec.inputs.values()))
            ups = {f"up{i}": outs[d] for i, d in enumerate(data, start=1)}
            after = [d for d in spec.after if d not in data]
            outs[step] = steps[step](bridge=key, step=step, params=dict(params or {}),
                                     pipeline=ref, options=options, id=step,
                                     after=after or None, **ups)

    build.__name__ = build.__qualname__ = pipe.name.replace("-", "_")
    build.__annotations__ = {"params": dict[str, Any] | None, "return": None}
    pipeline_kwargs.setdefault("enable_cache", False)
    return zenml.pipeline(build, name=name or pipe.name, **pipeline_kwargs)


def reliable(decorated: Any = None, *, pipeline: str | None = None,
             home: str | Path | None = None, hooks: str | None = None,
             contracts: bool = True, sla: bool = False) -> Any:
    """Add our contracts, chaos faults, ledger and metrics to an existing ZenML ``@step``.

    Put it above ``@step(...)`` (or call ``reliable(my_step, ...)``). The step keeps its
    code, its return value, its materializers and its ``StepRetryConfig``; each try is an
    attempt of step ``<invocation name>`` of pipeline ``pipeline`` (default: the ZenML
    pipeline's name) in our ledger, with its outcome and pid; its arguments are the step's
    inputs (by parameter name) and its return value the output, checked against the
    project's contracts and recorded by digest. A contract violation quarantines the output
    and fails the step; ZenML's retry of it is refused at once (the body does not run
    again), so the run fails there and the downstream steps do not run; they are
    ``upstream_failed`` in our ledger (each wrapped step comes after the wrapped steps it
    depends on in the ZenML run's DAG; with ZenML's ``stop_on_failure`` or ``fail_fast``
    execution mode, every wrapped step not yet started). A return value that does not match
    the step's annotated output fails the try before ZenML's own check (which comes after
    the try's ``on_end``). An ``async def`` step is awaited between our hooks (ZenML runs
    it on an event loop of its own).

    ZenML's per-try ``on_start``/``on_end`` hooks are set (the step's own ones still run,
    after ours); ``on_success``/``on_failure`` stay the team's. ``hooks`` names a list of
    step hooks by ``"module:attr"`` (such as a :class:`~reliability.chaos.hook.ChaosHook`):
    the options travel in the step's configuration, so the step works wherever ZenML runs
    it.
    """
    options = {"pipeline": pipeline,
               "home": str(Path(home).resolve()) if home is not None else None,
               "hooks": hooks, "contracts": contracts, "sla": sla}
    if hooks is not None and not isinstance(hooks, str):
        raise DefinitionError(
            f"reliable(hooks=...) takes a 'module:attr' reference, got {hooks!r}. Fix: "
            "put the hooks in a module-level list and pass e.g. 'myproject.chaos:hooks'")

    def wrap(zstep: Any) -> Any:
        require("zenml", "zenml", "the ZenML adapter")
        from reliability.adapters.zenml_steps import guarded_step

        return guarded_step(zstep, options)

    return wrap(decorated) if decorated is not None else wrap
