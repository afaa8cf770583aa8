"""Kubeflow Pipelines v2 adapter: a :class:`~reliability.pipeline.Pipeline` as a KFP
pipeline of lightweight Python components.

    from kfp import compiler
    from reliability.adapters.kfp import to_pipeline
    pipe = to_pipeline("pipelines.reference:pipeline", base_image="registry/team:1.2")
    compiler.Compiler().compile(pipe, "reference.yaml")      # submit it to a KFP cluster

    kfp.local.init(runner=kfp.local.SubprocessRunner(use_venv=False))
    pipe(params='{"seed": 3}')                               # or run it locally

One KFP task per step, dependencies preserved. A KFP component carries only its function's
source, so every task runs the same small component that imports ``reliability`` and loads
the step by its ``"module:attr"`` pipeline reference: the image (``base_image``) must have
this project and the pipeline's module installed. Each task calls the shared step wrapper
(:class:`~reliability.adapters.core.StepBridge`): our contracts, chaos faults, ledger,
metrics and SLA monitor run around the step, outputs go to our content-addressed store (a
``home`` every task reaches) and tasks hand each other its digests as a small JSON string.
``Retry(attempts=n)`` becomes ``set_retry(num_retries=n-1, ...)``, kept in the compiled
YAML. KFP has no hooks and retries every failure: the component keeps the attempt count
in our ledger, and a task re-launched after a contract violation (or another error the
step must not retry) sees the recorded failure and fails at once without running the step
again, so the ledger holds one attempt and the run fails. A SIGKILLed task is re-launched by
``set_retry`` and records the lost attempt as ``worker_lost``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reliability._lazy import require
from reliability.adapters.core import (
    HostAttempt,
    StepBridge,
    host_run_id,
    load_hooks,
)
from reliability.errors import DefinitionError
from reliability.pipeline import Pipeline

__all__ = ["MAX_INPUTS", "run_component", "to_pipeline"]

MAX_INPUTS = 6
"""Upstream steps one step may read (the component's ``up1``..``up6`` inputs)."""


_BRIDGES: dict[tuple[str, str], StepBridge] = {}


def run_component(target: str, step: str, options: str, params: str, run: str,
                  upstream: Sequence[str]) -> str:
    """The component's body: one attempt of ``step`` of pipeline ``target`` in KFP run
    ``run``; returns the committed output's ref as JSON."""
    key = (target, options)
    bridge = _BRIDGES.get(key)
    if bridge is None:
        opts = json.loads(options)
        hooks = load_hooks(opts["hooks"]) if opts.get("hooks") else []
        bridge = _BRIDGES[key] = StepBridge(
            target, home=opts.get("home"), hooks=hooks, contracts=opts.get("contracts", True),
            sla=opts.get("sla", True), isolate=opts.get("isolate", False))
    s = bridge.session()
    run_id = host_run_id(bridge.pipeline.name, run)
    tries = [int(a["attempt"]) for a in s.ledger.attempts(run_id, step)]
    attempt = max(tries, default=0) + 1
    refs = {r["step"]: r for r in (json.loads(u) for u in upstream if u)}
    at = HostAttempt(host_run_id=run, step=step, attempt=attempt,
                     retries_left=attempt <= bridge.retries(step), params=json.loads(params),
                     host_filters_errors=False)  # KFP retries every failure
    return json.dumps(bridge.run_step(at, refs))


def to_pipeline(pipeline: str, *, name: str | None = None, home: str | Path | None = None,
                hooks: str | None = None, contracts: bool = True, sla: bool = True,
                isolate: bool = False, base_image: str | None = None,
                packages_to_install: Sequence[str] = (),
                install_kfp_package: bool = True) -> Any:
    """Build a KFP pipeline (a ``GraphComponent``) running ``pipeline``, a ``"module:attr"``
    reference importable in the component's image; ``hooks`` likewise names a list of step
    hooks. The pipeline takes one parameter, ``params`` (JSON text, validated by the
    pipeline's model). ``base_image``, ``packages_to_install`` and ``install_kfp_package``
    go to ``kfp.dsl.component``. See :class:`StepBridge` for the other options.
    """
    dsl = require("kfp.dsl", "kfp", "the KFP adapter")
    bridge = StepBridge(pipeline, home=home, contracts=contracts, sla=sla, isolate=isolate)
    pipe: Pipeline = bridge.pipeline
    options = json.dumps({"home": str(home) if home is not None else None, "hooks": hooks,
                          "contracts": contracts, "sla": sla, "isolate": isolate})
    component_kwargs: dict[str, Any] = {"install_kfp_package": install_kfp_package}
    if base_image:
        component_kwargs["base_image"] = base_image
    if packages_to_install:
        component_kwargs["packages_to_install"] = list(packages_to_install)
    from reliability.adapters._kfp_component import reliability_step

    component = dsl.component(reliability_step, **component_kwargs)
    named: dict[str, Any] = {}
    for step in bridge.order:
        named[step] = copy.deepcopy(component)  # the same function, a task named by step
        named[step].component_spec.name = step
        data = dict.fromkeys(pipe.steps[step].inputs.values())
        if len(data) > MAX_INPUTS:
            raise DefinitionError(
                f"step {step!r} of pipeline {pipe.name!r} reads {len(data)} upstream steps; "
                f"a KFP task of this adapter takes at most {MAX_INPUTS}. Fix: combine "
                "inputs in an intermediate step")

    def build(params: str = "{}") -> None:
        tasks: dict[str, Any] = {}
        for step in bridge.order:
            spec = pipe.steps[step]
            data = list(dict.fromkeys(spec.inputs.values()))
            ups = {f"up{i}": tasks[d].output for i, d in enumerate(data, start=1)}
            task = named[step](target=pipeline, step=step, options=options, params=params,
                               run=dsl.PIPELINE_JOB_ID_PLACEHOLDER, **ups)
            task.set_caching_options(False)  # attempts are ours to record
            retry = spec.retry
            if bridge.retries(step):
                task.set_retry(num_retries=bridge.retries(step),
                               backoff_duration=f"{int(retry.backoff)}s",
                               backoff_factor=retry.multiplier,
                               backoff_max_duration=f"{int(retry.max_backoff)}s")
            for dep in spec.after:
                if dep not in data:
                    task.after(tasks[dep])
            tasks[step] = task

    build.__name__ = build.__qualname__ = pipe.name.replace("-", "_")
    build.__annotations__ = {"params": str, "return": None}  # KFP reads them as types
    return dsl.pipeline(build, name=name or pipe.name,
                        description=pipe.description or f"pipeline {pipe.name}")
