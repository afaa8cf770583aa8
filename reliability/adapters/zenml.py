"""ZenML adapter: a :class:`~reliability.pipeline.Pipeline` as a ZenML pipeline of steps.

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
``StepRetryConfig(max_retries=n-1)``. ZenML retries every exception, so the attempt
count is kept in our ledger and a retry after a contract violation (or an error the step
does not retry) is refused at once without running the step: the ledger holds one attempt,
the run fails and the downstream steps do not run.

ZenML's local orchestrator runs steps in the pipeline's own process, so a SIGKILL of that
process ends the run. ``isolate=True`` runs each step body in one of our supervised worker
processes: a killed worker is recorded as ``worker_lost`` and ZenML retries the step.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reliability._lazy import require
from reliability.adapters.core import HostAttempt, StepBridge
from reliability.errors import DefinitionError
from reliability.pipeline import StepHook

__all__ = ["MAX_INPUTS", "StoreRef", "run_step", "to_pipeline"]

MAX_INPUTS = 6
"""Upstream steps one step may read."""


class StoreRef(dict[str, str]):
    """What one ZenML step hands the next: ``{"step", "digest", "codec"}`` of our store."""


_BRIDGES: dict[str, StepBridge] = {}
_COUNT = itertools.count(1)


def run_step(key: str, step: str, params: dict[str, Any], upstream: Sequence[Any]) -> StoreRef:
    """The ZenML step's body: one attempt of ``step`` through bridge ``key``."""
    from zenml import get_step_context

    from reliability.adapters.core import host_run_id

    bridge = _BRIDGES.get(key)
    if bridge is None:
        raise DefinitionError(
            f"step {step!r} runs in a process where its pipeline was not built ({key}). "
            "Fix: run pipelines from to_pipeline on ZenML's local orchestrator")
    host_run = str(get_step_context().pipeline_run.id)
    rows = bridge.session().ledger.attempts(host_run_id(bridge.pipeline.name, host_run), step)
    attempt = max((int(a["attempt"]) for a in rows), default=0) + 1  # ZenML does not say
    at = HostAttempt(host_run_id=host_run, step=step, attempt=attempt,
                     retries_left=attempt <= bridge.retries(step), params=params,
                     host_filters_errors=False)  # StepRetryConfig retries everything
    refs = {r["step"]: dict(r) for r in upstream if r}
    return StoreRef(bridge.run_step(at, refs))


def to_pipeline(pipeline: Any, *, name: str | None = None, home: str | Path | None = None,
                hooks: Sequence[StepHook] = (), contracts: bool = True, sla: bool = True,
                isolate: bool = False, **pipeline_kwargs: Any) -> Any:
    """Build a ZenML pipeline running ``pipeline`` (a Pipeline or ``"module:attr"``): one
    step per step. It takes one parameter, ``params`` (a dict validated by the pipeline's
    model). ``pipeline_kwargs`` go to ``zenml.pipeline``. See :class:`StepBridge` for the
    other options."""
    zenml = require("zenml", "zenml", "the ZenML adapter")
    from zenml.config.retry_config import StepRetryConfig

    from reliability.adapters.zenml_steps import reliability_step

    bridge = StepBridge(pipeline, home=home, hooks=hooks, contracts=contracts, sla=sla,
                        isolate=isolate)
    pipe = bridge.pipeline
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
                                     id=step, after=after or None, **ups)

    build.__name__ = build.__qualname__ = pipe.name.replace("-", "_")
    build.__annotations__ = {"params": dict[str, Any] | None, "return": None}
    pipeline_kwargs.setdefault("enable_cache", False)
    return zenml.pipeline(build, name=name or pipe.name, **pipeline_kwargs)
