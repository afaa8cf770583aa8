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

For flows that keep their own code, :data:`reliable_step` (a Metaflow user step decorator)
adds the same around a hand-written step, and :class:`reliable` (a flow mutator) adds it to
every step of a flow::

    from reliability.adapters.metaflow import reliable_step

    class FeaturesFlow(FlowSpec):
        @reliable_step(inputs=["raw"], output="features")
        @retry(times=2, minutes_between_retries=0)
        @step
        def featurize(self):
            self.features = build(self.raw)
            self.next(self.end)

Each try of a decorated step is an attempt of step ``featurize`` of pipeline
``FeaturesFlow`` (``pipeline=`` renames it) in our ledger, in the run ``FeaturesFlow-<run
id>``, with Metaflow's try number and the task's pid. The artifacts named by ``inputs`` are
the step's inputs and the artifact named by ``output`` its output, which the project's
contracts (``contracts/<pipeline>/<step>.output.yaml``) check and our store keeps by digest;
chaos ``hooks`` may fail the try or corrupt those artifacts. A contract violation (or the last
try, or an error the step does not retry) ends the task with exit status 202, so ``@retry``
does not run it again, the run fails and the decorated steps after it are recorded
``upstream_failed``.

A decorated step on a conditional branch (``self.next({...}, condition=...)``) the run did
not take is recorded ``skipped``, with the switch, its case and condition as the reason, by
the first decorated task that knows the switch's decision: the switch step itself (from its
transition), a step on the taken branch (from where it is in the graph) or one after the
branches meet (from the condition artifact). The run then settles as usual. In a run
started by Metaflow's ``resume``, the decorated steps Metaflow copies from the run it
resumes (without running them) are recorded with their outcome there.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import keyword
import math
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from reliability._lazy import require
from reliability._record import record
from reliability.adapters.core import (
    AttemptFailed,
    AttemptNotRetryable,
    GuardedAttempt,
    HostAttempt,
    StepBridge,
    load_hooks,
)
from reliability.errors import DefinitionError

require("metaflow", "metaflow", "the Metaflow adapter")  # a clear error if it is missing
from metaflow import FlowMutator, user_step_decorator  # noqa: E402

__all__ = ["EXIT_NO_RETRY", "bridge", "flow_source", "reliable", "reliable_step", "run_step"]

EXIT_NO_RETRY = 202
"""The exit status Metaflow's runtime does not retry (``METAFLOW_EXIT_DISALLOW_RETRY``)."""

_RESERVED = {"start", "end", "next", "input", "index", "foreach_stack", "merge_artifacts",
             "run_params", "refs"}
_BRIDGES: dict[tuple[str, str | None, str | None, bool, bool, bool], StepBridge] = {}
_NO_RETRY: list[StepBridge] = []
_NO_RETRY_SET: list[bool] = []


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
        _no_retry(step_bridge)
        raise
    refs[step] = ref
    flow.refs = refs


def _no_retry(step_bridge: StepBridge | None) -> None:
    """Make this task's process end with :data:`EXIT_NO_RETRY` once Metaflow has recorded
    its failure (the only signal that stops ``@retry``: it has no exception filter)."""
    if not _NO_RETRY_SET:
        _NO_RETRY_SET.append(True)
        atexit.register(_exit_no_retry)
    if step_bridge is not None:
        _NO_RETRY.append(step_bridge)


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


# -- users' own flows: @reliable_step and @reliable ------------------------------------------
DECORATOR = f"{__name__}.reliable_step"
"""Metaflow's name of :data:`reliable_step`."""

_OPTIONS = ("pipeline", "inputs", "output", "home", "hooks", "contracts", "sla")
_USER_BRIDGES: dict[tuple[Any, ...], StepBridge] = {}


@record(frozen=True)
class _StepOptions:
    """What one ``@reliable_step(...)`` says (its Metaflow attributes)."""

    pipeline: str
    inputs: tuple[str, ...]
    output: str | None
    home: str | None
    hooks: Any
    contracts: bool
    sla: bool

    @classmethod
    def of(cls, flow_name: str, step: str, attributes: Mapping[str, Any]) -> _StepOptions:
        where = f"@reliable_step of step {step!r} of flow {flow_name}"
        unknown = sorted(set(attributes) - set(_OPTIONS))
        if unknown:
            raise DefinitionError(f"{where}: unknown option(s) {unknown}. Fix: use "
                                  f"{list(_OPTIONS)}")
        inputs = attributes.get("inputs") or ()
        inputs = (inputs,) if isinstance(inputs, str) else tuple(inputs)
        output = attributes.get("output")
        for name in (*inputs, *([output] if output is not None else [])):
            if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
                raise DefinitionError(f"{where}: {name!r} is not an artifact name. Fix: "
                                      "name artifacts the step reads (inputs=[...]) and "
                                      "sets (output=...), e.g. output='features'")
        home = attributes.get("home")
        return cls(pipeline=str(attributes.get("pipeline") or flow_name), inputs=inputs,
                   output=output, home=str(home) if home is not None else None,
                   hooks=attributes.get("hooks"),
                   contracts=bool(attributes.get("contracts", True)),
                   sla=bool(attributes.get("sla", True)))

    def key(self) -> tuple[Any, ...]:
        hooks = self.hooks if isinstance(self.hooks, str) or self.hooks is None \
            else id(self.hooks)
        return (self.pipeline, self.home, hooks, self.contracts, self.sla)


def _decorated(flow: Any) -> dict[str, Mapping[str, Any]]:
    """The steps of ``flow`` carrying :data:`reliable_step`, with its attributes."""
    found: dict[str, Mapping[str, Any]] = {}
    for node in flow._graph:
        for wrapper in getattr(getattr(type(flow), node.name), "wrappers", ()):
            if getattr(wrapper, "decorator_name", None) == DECORATOR:
                found[node.name] = dict(getattr(wrapper, "_kwargs", None) or {})
    return found


def _host_retries(flow: Any, step: str) -> int:
    """How many times Metaflow runs ``step``'s code again after it fails: the largest
    user-code retry count of its decorators (``@retry(times=n)``). A ``@catch`` fallback
    try is not counted: a step we end for good exits with 202, which ends its retries."""
    user = 0
    for deco in getattr(getattr(type(flow), step), "decorators", ()):
        counts = deco.step_task_retry_count()
        if counts == (None, None):
            return 0
        user = max(user, int(counts[0] or 0))
    return user


def _user_bridge(flow: Any, step: str, opts: _StepOptions) -> StepBridge:
    """The bridge of the decorated steps of ``flow`` that record into ``opts.pipeline``
    (one per process): each registered with its artifacts and the decorated steps it
    runs after in Metaflow's graph, so a failure marks those after it."""
    found = _USER_BRIDGES.get(opts.key())
    if found is not None:
        return found
    hooks = load_hooks(opts.hooks) if isinstance(opts.hooks, str) else list(opts.hooks or ())
    b = StepBridge.for_tasks(opts.pipeline, home=opts.home, hooks=hooks,
                             contracts=opts.contracts, sla=opts.sla)
    flow_name = type(flow).__name__
    steps = {name: _StepOptions.of(flow_name, name, attrs)
             for name, attrs in _decorated(flow).items()}
    steps = {name: o for name, o in steps.items() if o.pipeline == opts.pipeline}
    steps.setdefault(step, opts)
    graph = flow._graph
    for name, o in steps.items():
        after: set[str] = set()
        todo, seen = list(graph[name].in_funcs), set()
        while todo:
            up = todo.pop()
            if up not in seen:
                seen.add(up)
                if up in steps:
                    after.add(up)
                else:
                    todo.extend(graph[up].in_funcs)
        b.register(getattr(type(flow), name), name, attempts=_host_retries(flow, name) + 1,
                   inputs=o.inputs, after=sorted(after))
    _USER_BRIDGES[opts.key()] = b
    return b


def _reach(graph: Any, step: str, *, without: str | None = None) -> set[str]:
    """The steps Metaflow's ``graph`` can run from ``step`` on (itself included), not
    passing through step ``without``."""
    seen: set[str] = set()
    todo = [step]
    while todo:
        name = todo.pop()
        if name not in seen and name != without:
            seen.add(name)
            todo.extend(graph[name].out_funcs)
    return seen


def _start_step(graph: Any) -> str:
    return str(getattr(graph, "start_step", None) or "start")


def _ran_before(graph: Any, here: str, gone: Any) -> set[str]:
    """The steps that ran on the way to step ``here`` (itself included) when none of
    ``gone`` ran: every branch into a join, the one way common to all ways into a step
    where a switch's branches meet (a loop's way back ignored)."""
    memo: dict[str, set[str]] = {}

    def ran(name: str) -> set[str]:
        if name not in memo:
            node = graph[name]
            ways = [ran(p) for p in sorted(node.in_funcs)
                    if p not in gone and p not in _reach(graph, name)]
            before = (set().union(*ways) if node.type == "join"
                      else set.intersection(*ways)) if ways else set()
            memo[name] = {name, *before}
        return memo[name]

    return ran(here)


def _went(flow: Any, switch: Any, here: str, chosen: str | None) -> tuple[set[str], str]:
    """The case steps ``switch``, which ran on the way to the task of step ``here`` (or is
    ``here``), went to (none where that cannot be told), and its condition as a reason
    shows it. ``chosen`` is where ``here`` goes when it is the switch."""
    value: Any = None
    with contextlib.suppress(Exception):
        value = getattr(flow, switch.condition)
    by_value: set[str] = set()
    with contextlib.suppress(TypeError):  # an unhashable condition value
        if value in switch.switch_cases:
            by_value = {switch.switch_cases[value]}
    if switch.name == here:
        went = {chosen} if chosen else by_value
    else:  # the cases leading to ``here``; where every case does (the branches met) the
        # condition artifact tells
        went = {c for c in switch.out_funcs if here in _reach(flow._graph, c)}
        if went == set(switch.out_funcs):
            went = by_value
    shown = switch.condition + (f"={value!r}" if by_value and by_value <= went else "")
    return went, shown


def _way_here(flow: Any, here: str, chosen: str | None = None
              ) -> tuple[set[str], dict[str, str]]:
    """The steps that ran on the way to the task of step ``here`` (itself included), and
    every step that will not run in this run because a switch went another way, with why
    (``chosen``: where ``here`` goes, when it is a switch): a switch ran on the way to
    ``here`` (or is ``here``), and the step is reached only through that switch's cases it
    did not go to."""
    graph = flow._graph
    start = _start_step(graph)
    node = graph[here]
    goes = _went(flow, node, here, chosen)[0] if node.type == "split-switch" else set()
    after_here = {here}.union(*(_reach(graph, n) for n in goes or node.out_funcs))
    gone: dict[str, str] = {}
    decided: set[str] = set()
    while True:  # a switch decided may reveal the next one on the way (nested switches)
        ran = _ran_before(graph, here, gone)
        switches = [n for n in sorted(ran) if n not in decided
                    and graph[n].type == "split-switch" and not graph[n].is_inside_foreach]
        if not switches:
            return ran, gone
        for name in switches:
            decided.add(name)
            went, condition = _went(flow, graph[name], here, chosen)
            if not went:
                continue
            still = after_here.union(*(_reach(graph, c) for c in went))
            without = _reach(graph, start, without=name)  # reached without the switch
            for other in graph:
                step = other.name
                if step not in gone and step not in still and step not in without \
                        and step != name:
                    gone[step] = (f"branch not taken (step {name!r} went to "
                                  f"{' or '.join(repr(c) for c in sorted(went))} on "
                                  f"condition {condition})")


def _flow_params(flow: Any, names: Any) -> dict[str, Any]:
    values = {}
    for name in names or ():
        with contextlib.suppress(Exception):
            values[str(name)] = getattr(flow, name)
    return dict(json.loads(json.dumps(values, default=str)))


def _begin(step: str, flow: Any, join_inputs: Any, attributes: Mapping[str, Any]
           ) -> tuple[StepBridge, _StepOptions, GuardedAttempt]:
    try:
        return _start(step, flow, join_inputs, attributes)
    except DefinitionError:  # a mistake in the flow: no retry fixes it
        _no_retry(None)
        raise


def _start(step: str, flow: Any, join_inputs: Any, attributes: Mapping[str, Any]
           ) -> tuple[StepBridge, _StepOptions, GuardedAttempt]:
    from metaflow import current

    flow_name = str(current.flow_name)
    opts = _StepOptions.of(flow_name, step, attributes)
    where = f"@reliable_step of step {step!r} of flow {flow_name}"
    node = flow._graph[step]
    if node.is_inside_foreach:
        raise DefinitionError(f"{where}: the step runs inside a foreach (one task per "
                              "item), which the ledger cannot record as one step yet. Fix: "
                              "decorate the steps outside the foreach")
    if join_inputs is not None and opts.inputs:
        raise DefinitionError(f"{where}: a join step's artifacts differ per branch. Fix: "
                              "merge them (self.merge_artifacts) in the join and declare "
                              "inputs on the step after it")
    b = _user_bridge(flow, step, opts)
    values: dict[str, Any] = {}
    for name in opts.inputs:
        try:
            values[name] = getattr(flow, name)
        except AttributeError:
            raise DefinitionError(f"{where}: input artifact {name!r} does not exist when "
                                  "the step starts. Fix: set self." + name + " in a step "
                                  "before it, or remove it from inputs") from None
    attempt = int(current.retry_count) + 1
    at = HostAttempt(host_run_id=str(current.run_id), step=step, attempt=attempt,
                     retries_left=attempt <= b.retries(step),
                     params=_flow_params(flow, current.get("parameter_names")),
                     host_filters_errors=False)
    try:
        guarded = b.begin(at, values, run_steps=b.order)
    except AttemptNotRetryable:
        _no_retry(b)
        raise
    for name, value in guarded.inputs.items():
        if value is not values[name]:  # a hook replaced it (a chaos data fault)
            setattr(flow, name, value)
    _skip_branches(b, flow, step, at.host_run_id, origin=current.origin_run_id)
    return b, opts, guarded


def _skip_branches(b: StepBridge, flow: Any, step: str, host_run: str,
                   chosen: str | None = None, *, origin: str | None = None) -> None:
    """Record the decorated steps on the conditional branches this run did not take
    ``skipped`` (with the switch, its case and condition as the reason). In a run that
    resumes run ``origin``, the decorated steps that ran before ``step`` but were not
    recorded were copied from it by Metaflow: they get their outcome there."""
    ran, gone = _way_here(flow, step, chosen)
    reasons = {name: gone[name] for name in b.order if name in gone}
    if reasons:
        b.skip_steps(host_run, reasons)
    if origin:
        b.carry_steps(host_run, str(origin), [name for name in b.order if name in ran])


def _finish(b: StepBridge, opts: _StepOptions, guarded: GuardedAttempt, flow: Any,
            error: Exception | None) -> None:
    """End the attempt; raises what Metaflow should see: the step's own exception when
    ``@retry`` may run it again, else :class:`AttemptNotRetryable` (exit status 202)."""
    try:
        if error is not None:
            guarded.fail(error)
        output = getattr(flow, opts.output) if opts.output else None
        result = guarded.end(output)
    except AttemptNotRetryable:
        _no_retry(b)
        raise
    except AttemptFailed:
        if error is None:
            raise
        raise error from None
    except AttributeError:  # the step did not set its output artifact
        _finish(b, opts, guarded, flow, DefinitionError(
            f"step {guarded.at.step!r} did not set its output artifact {opts.output!r}. "
            f"Fix: assign self.{opts.output} in the step, or correct output="))
        return
    if opts.output and result is not output:  # a hook replaced it (a chaos data fault)
        setattr(flow, opts.output, result)
    if flow._graph[guarded.at.step].type == "split-switch":
        # where it goes: self.next left ([step], None) (else its condition artifact tells)
        transition = getattr(flow, "_transition", None)
        chosen = transition[0][0] if transition and len(transition[0]) == 1 else None
        _skip_branches(b, flow, guarded.at.step, guarded.at.host_run_id, chosen)


def _reliable_step(step_name: str, flow: Any, inputs: Any, attributes: dict[str, Any]
                   ) -> Iterator[None]:
    b, opts, guarded = _begin(step_name, flow, inputs, attributes)
    try:
        yield
    except Exception as exc:
        _finish(b, opts, guarded, flow, exc)
        return
    _finish(b, opts, guarded, flow, None)


_reliable_step.__name__ = _reliable_step.__qualname__ = "reliable_step"
reliable_step: Any = user_step_decorator(_reliable_step)
"""Metaflow user step decorator: our ledger, contracts and chaos hooks around a step of the
user's own flow. Options: ``inputs`` (names of artifacts the step reads), ``output`` (the
artifact it sets), ``pipeline`` (default: the flow's name), ``home``, ``hooks`` (step hooks
or a ``"module:attr"`` reference to a list of them), ``contracts``, ``sla``."""


class reliable(FlowMutator):  # type: ignore[misc]
    """Add :data:`reliable_step` to every step of a flow (``steps=`` picks some), above
    the ``FlowSpec`` class: ``@reliable(outputs={"featurize": "features"},
    inputs={"featurize": ["raw"]})``. The other options (``pipeline``, ``home``, ``hooks``,
    ``contracts``, ``sla``) apply to every step; a step's own ``@reliable_step`` wins."""

    _KNOWN = frozenset({"steps", "outputs", *_OPTIONS} - {"output"})

    def init(self, *args: Any, **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - self._KNOWN)
        if args or unknown:
            raise DefinitionError(
                f"@reliable takes keyword options only, not {list(args) or unknown}. "
                f"Fix: use {sorted(self._KNOWN)}")
        self._options = dict(kwargs)

    def mutate(self, mutable_flow: Any) -> None:
        opts = dict(getattr(self, "_options", {}))
        only = opts.pop("steps", None)
        outputs = dict(opts.pop("outputs", None) or {})
        inputs = dict(opts.pop("inputs", None) or {})
        for name, mutable_step in mutable_flow.steps:
            if only is not None and name not in only:
                continue
            kwargs = dict(opts)
            if name in outputs:
                kwargs["output"] = outputs[name]
            if name in inputs:
                kwargs["inputs"] = inputs[name]
            mutable_step.add_decorator(reliable_step, deco_kwargs=kwargs,
                                       duplicates=mutable_step.IGNORE)
