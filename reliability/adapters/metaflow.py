"""Metaflow adapter: a :class:`~reliability.pipeline.Pipeline` as a generated ``FlowSpec``.

Metaflow reads a flow's graph from its source code (``self.next(...)`` calls), so the flow
is generated as a file::

    from reliability.adapters.metaflow import flow_source
    Path("reference_flow.py").write_text(flow_source("pipelines.reference:pipeline"))

    python reference_flow.py run --run_params '{"seed": 3}'     # or metaflow.Runner

One Metaflow step per pipeline step, in the pipeline's topological order (a linear flow:
Metaflow's branches must be joined pairwise, which a general DAG does not map onto), between
Metaflow's ``start`` and ``end``. Each step calls the shared step wrapper
(:class:`~reliability.adapters.core.StepBridge`) through :func:`run_step`: our contracts,
chaos faults, ledger, metrics and SLA monitor run around the step, outputs go to our
content-addressed store and steps hand each other its digests as the ``refs`` artifact (no
DataFrames pickled by Metaflow). A step's ``Retry(attempts=n)`` becomes
``@retry(times=n-1)``, its timeout ``@timeout``. Metaflow's ``@retry`` retries every
failure; a contract violation, an error the step does not retry or the last try ends the
task's process with Metaflow's "do not retry" exit status (202) once the failure is
recorded, so Metaflow does not run the step again and the run fails.

Each Metaflow task runs in its own process: a SIGKILLed task is retried by ``@retry`` and
the next try records the lost one as ``worker_lost`` in our ledger.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import keyword
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reliability.adapters.core import AttemptNotRetryable, HostAttempt, StepBridge, load_hooks
from reliability.errors import DefinitionError

__all__ = ["EXIT_NO_RETRY", "bridge", "flow_source", "run_step"]

EXIT_NO_RETRY = 202
"""The exit status Metaflow's runtime does not retry (``METAFLOW_EXIT_DISALLOW_RETRY``)."""

_RESERVED = {"start", "end", "next", "input", "index", "foreach_stack", "merge_artifacts",
             "run_params", "refs"}
_BRIDGES: dict[tuple[str, str | None, str | None, bool, bool, bool], StepBridge] = {}
_NO_RETRY: list[StepBridge] = []


def bridge(pipeline: str, *, home: str | None = None, hooks: str | None = None,
           contracts: bool = True, sla: bool = True, isolate: bool = False) -> StepBridge:
    """The step wrapper of a generated flow (one per process and options).

    ``pipeline`` and ``hooks`` are ``"module:attr"`` references (``hooks`` names a list of
    step hooks such as a :class:`~reliability.chaos.hook.ChaosHook`): every Metaflow task
    is a fresh process that imports the flow file.
    """
    key = (pipeline, home, hooks, contracts, sla, isolate)
    found = _BRIDGES.get(key)
    if found is None:
        extra = load_hooks(hooks) if hooks else []
        found = _BRIDGES[key] = StepBridge(pipeline, home=home, hooks=extra,
                                           contracts=contracts, sla=sla, isolate=isolate)
    return found


def run_step(flow: Any, step_bridge: StepBridge, step: str) -> None:
    """Run the current Metaflow task as an attempt of ``step``: reads the upstream refs
    from the flow's ``refs`` artifact and adds the step's own."""
    from metaflow import current

    attempt = int(current.retry_count) + 1
    params = flow.run_params
    if isinstance(params, str):  # a JSON document passed as a JSON string
        params = json.loads(params)
    if not isinstance(params, Mapping):
        raise DefinitionError(f"run_params of flow {current.flow_name} is {params!r}, not "
                              'a JSON object. Fix: pass e.g. --run_params \'{"rows": 10}\'')
    at = HostAttempt(host_run_id=str(current.run_id), step=step, attempt=attempt,
                     retries_left=attempt <= step_bridge.retries(step), params=dict(params),
                     host_filters_errors=False)  # @retry has no exception filter
    refs = dict(getattr(flow, "refs", None) or {})
    spec = step_bridge.spec(step)
    try:
        ref = step_bridge.run_step(at, {d: refs[d] for d in dict.fromkeys(
            spec.inputs.values())})
    except AttemptNotRetryable:
        if not _NO_RETRY:
            atexit.register(_exit_no_retry)
        _NO_RETRY.append(step_bridge)
        raise
    refs[step] = ref
    flow.refs = refs


def _exit_no_retry() -> None:
    """At the end of a task whose step must not retry: Metaflow has recorded the failure;
    exit with the status its runtime does not retry."""
    for b in _NO_RETRY:
        b.close()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(EXIT_NO_RETRY)


def flow_source(pipeline: str, *, class_name: str | None = None, home: str | Path | None = None,
                hooks: str | None = None, contracts: bool = True, sla: bool = True,
                isolate: bool = False) -> str:
    """The source of a Metaflow flow file running ``pipeline`` (a ``"module:attr"``
    reference, importable where the flow runs). Write it to ``<name>.py`` and run it with
    ``python <name>.py run --run_params '{...}'`` or ``metaflow.Runner``; the
    ``run_params`` parameter (JSON) holds the run parameters, validated by the pipeline's
    model.
    See :func:`bridge` for ``hooks`` and :class:`StepBridge` for the other options."""
    b = StepBridge(pipeline, home=home, contracts=contracts, sla=sla, isolate=isolate)
    pipe = b.pipeline
    for step in b.order:
        if not step.isidentifier() or keyword.iskeyword(step) or step in _RESERVED \
                or step.startswith("_"):
            raise DefinitionError(
                f"step {step!r} of pipeline {pipe.name!r} cannot be a Metaflow step (it "
                f"must be a Python identifier other than {sorted(_RESERVED)}). Fix: rename "
                "the step")
    cls = class_name or "".join(p.title() for p in pipe.name.replace("-", "_").split("_")
                                if p) + "Flow"
    if not cls.isidentifier():
        cls = "PipelineFlow"
    options = (f"{pipeline!r}, home={str(home) if home is not None else None!r}, "
               f"hooks={hooks!r}, contracts={contracts!r}, sla={sla!r}, "
               f"isolate={isolate!r}")
    lines = [
        f'"""Metaflow flow of pipeline {pipe.name} (generated by reliability.adapters.'
        'metaflow.flow_source)."""',
        "",
        "from metaflow import FlowSpec, JSONType, Parameter, retry, step, timeout",
        "",
        "from reliability.adapters.metaflow import bridge, run_step",
        "",
        f"BRIDGE = bridge({options})",
        "",
        "",
        f"class {cls}(FlowSpec):",
        f'    """{(pipe.description or f"pipeline {pipe.name}").replace(chr(34), chr(39))}"""',
        "",
        '    run_params = Parameter("run_params", type=JSONType, default="{}",',
        '                           help="run parameters (JSON), validated by the pipeline")',
        "",
        "    @step",
        "    def start(self):",
        "        self.refs = {}",
        f"        self.next(self.{b.order[0] if b.order else 'end'})",
    ]
    for i, step in enumerate(b.order):
        spec = pipe.steps[step]
        nxt = b.order[i + 1] if i + 1 < len(b.order) else "end"
        minutes = math.ceil(spec.retry.backoff / 60) if spec.retry.backoff else 0
        lines += ["", f"    @retry(times={b.retries(step)}, minutes_between_retries={minutes})"]
        if spec.timeout:
            lines.append(f"    @timeout(seconds={math.ceil(spec.timeout)})")
        lines += ["    @step", f"    def {step}(self):",
                  f"        run_step(self, BRIDGE, {step!r})",
                  f"        self.next(self.{nxt})"]
    lines += ["", "    @step", "    def end(self):", "        pass", "", "",
              'if __name__ == "__main__":', f"    {cls}()", ""]
    return "\n".join(lines)
