"""The ZenML steps, hooks and materializer of the ZenML adapter (a module of their own: ZenML
loads steps, hooks and materializers by import path, and this module imports ZenML).

A step wrapped by :func:`~reliability.adapters.zenml.reliable` is loaded by ZenML from this
module under a name that encodes the team's step source (``reliable_<hex>``, resolved by the
module's ``__getattr__``), so the wrapper is what runs wherever ZenML loads the step,
whether or not the team rebound the step's name.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, NoReturn

from zenml import get_step_context, step
from zenml.config.source import Source
from zenml.enums import ArtifactType
from zenml.materializers.base_materializer import BaseMaterializer
from zenml.steps import BaseStep
from zenml.utils import async_utils, source_utils

from reliability.adapters.core import (
    AttemptNotRetryable,
    GuardedAttempt,
    StepBridge,
    not_run_here,
)
from reliability.adapters.zenml import StoreRef, host_attempt, run_step
from reliability.contracts.interface import Interface, interface_of
from reliability.errors import ContractViolation, DefinitionError
from reliability.pipeline import StepContext, StepHook, StepSpec

__all__ = ["StepOutputRefused", "StoreRefMaterializer", "end_hook", "guarded_step",
           "reliability_step", "start_hook"]

OPTIONS = "reliability"
"""The key of our options in a wrapped step's ``extra`` configuration."""
_PREFIX = "reliable_"
_INNER = "__reliability_inner__"
_GUARDS: dict[tuple[Any, ...], StepBridge] = {}
_WRAPPED: dict[str, BaseStep] = {}
_OPEN: dict[str, GuardedAttempt] = {}  # step run id -> its attempt, until the body ends


class StoreRefMaterializer(BaseMaterializer):  # type: ignore[misc]
    """Stores a :class:`StoreRef` as a small JSON file (the data stays in our store; no
    extra artifact metadata: each entry costs ZenML a store write per step)."""

    ASSOCIATED_TYPES: ClassVar[tuple[type, ...]] = (StoreRef,)
    ASSOCIATED_ARTIFACT_TYPE = ArtifactType.DATA

    def load(self, data_type: type[Any]) -> StoreRef:
        with self.artifact_store.open(self._path(), "r") as f:
            return StoreRef(json.load(f))

    def save(self, data: StoreRef) -> None:
        with self.artifact_store.open(self._path(), "w") as f:
            json.dump(dict(data), f)

    def _path(self) -> str:
        return f"{self.uri}/ref.json"


@step(enable_cache=False, output_materializers=StoreRefMaterializer)  # type: ignore[misc,untyped-decorator]
def reliability_step(bridge: str, step: str, params: dict[str, Any],
                     up1: StoreRef | None = None, up2: StoreRef | None = None,
                     up3: StoreRef | None = None, up4: StoreRef | None = None,
                     up5: StoreRef | None = None, up6: StoreRef | None = None,
                     pipeline: str | None = None,
                     options: dict[str, Any] | None = None) -> StoreRef:
    """One attempt of pipeline step ``step`` through the adapter's bridge ``bridge`` (rebuilt
    from ``pipeline`` and ``options`` in a process that did not build the pipeline)."""
    return run_step(bridge, step, params, [up1, up2, up3, up4, up5, up6], pipeline, options)


# -- a team's own steps ---------------------------------------------------------------------
def guarded_step(zstep: Any, options: dict[str, Any]) -> Any:
    """``zstep`` (a ZenML step) with our hooks around its body and ZenML's per-try hooks."""
    if not isinstance(zstep, BaseStep):
        raise DefinitionError(f"reliable expects a ZenML @step, got {zstep!r}. Fix: put "
                              "@reliable above @step(...)")
    inner = _inner(zstep)
    source = source_utils.resolve(inner, skip_validation=True)
    conf = zstep.configuration
    user = {kind: src.model_dump(mode="json") for kind, src in (
        ("start", conf.start_hook_source), ("end", conf.end_hook_source))
        if src is not None and src.import_path not in _OUR_HOOKS}
    new = zstep.with_options(on_start=start_hook, on_end=end_hook, extra={OPTIONS: {
        **options, "user_hooks": user}})
    new.entrypoint = _wrapper(inner, source)
    return new


def _inner(zstep: BaseStep) -> Callable[..., Any]:
    fn = zstep.entrypoint
    return getattr(fn, _INNER, fn)  # type: ignore[no-any-return]


def _wrapper(fn: Callable[..., Any], source: Source) -> Callable[..., Any]:
    guarded: Callable[..., Any]
    if async_utils.is_async_callable(fn):  # as ZenML decides to await a step
        @functools.wraps(fn)
        async def guarded(*args: Any, **kwargs: Any) -> Any:
            return await _call_async(fn, args, kwargs)
    else:
        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            return _call(fn, args, kwargs)

    name = _PREFIX + f"{source.module}:{source.attribute}".encode().hex()
    own = source_utils.resolve(reliability_step.entrypoint, skip_validation=True)
    setattr(guarded, source_utils.ZENML_SOURCE_ATTRIBUTE_NAME,
            own.model_copy(update={"attribute": name}))
    setattr(guarded, _INNER, fn)
    return guarded


def __getattr__(name: str) -> Any:
    """ZenML loads a wrapped step by ``reliable_<hex of the team's step source>``."""
    if not name.startswith(_PREFIX):
        raise AttributeError(name)
    found = _WRAPPED.get(name)
    if found is None:
        try:
            module, _, attr = bytes.fromhex(name[len(_PREFIX):]).decode().partition(":")
        except ValueError:
            raise AttributeError(name) from None
        obj = source_utils.load(f"{module}.{attr}")
        zstep = obj if isinstance(obj, BaseStep) else step(obj)
        inner = _inner(zstep)
        found = zstep.copy()
        found.entrypoint = _wrapper(inner, source_utils.resolve(inner, skip_validation=True))
        _WRAPPED[name] = found
    return found


def _options() -> dict[str, Any] | None:
    opts = get_step_context().step_run.config.extra.get(OPTIONS)
    return opts if isinstance(opts, dict) else None


def _bridge(opts: dict[str, Any], fn: Callable[..., Any] | None = None
            ) -> tuple[StepBridge, str, list[str]]:
    """The bridge of a wrapped step's pipeline and of its ZenML run's DAG in this process,
    the step's name, and the run's wrapped steps."""
    from reliability.adapters.core import load_hooks

    ctx = get_step_context()
    pipeline = opts.get("pipeline") or str(ctx.pipeline.name)
    name = str(ctx.step_run.name)
    plan = _plan(pipeline, opts.get("home"))
    if name not in plan:  # a step ZenML added at run time (a dynamic pipeline)
        plan = {**plan, name: [s for s in ctx.step_run.spec.upstream_steps if s in plan]}
    key = (pipeline, opts.get("home"), opts.get("hooks"), bool(opts.get("contracts", True)),
           bool(opts.get("sla", False)), tuple((s, tuple(up)) for s, up in plan.items()))
    bridge = _GUARDS.get(key)
    if bridge is None:
        hooks = opts.get("hooks")
        bridge = _GUARDS[key] = StepBridge.for_tasks(
            pipeline, home=opts.get("home"),
            hooks=[*(load_hooks(hooks) if hooks else ()), _OutputCheck()],
            contracts=key[3], sla=key[4])
        for step_name, upstream in plan.items():
            bridge.register(not_run_here, step_name, inputs=[], after=upstream)
    if bridge.spec(name).fn is not_run_here:
        if fn is None:
            fn = _inner(BaseStep.load_from_source(ctx.step_run.spec.source))
        retry = ctx.step_run.config.retry
        bridge.register(fn, name, attempts=(retry.max_retries if retry else 0) + 1,
                        after=plan[name])
    return bridge, name, list(plan)


class _OutputCheck(StepHook):
    """Fails a try whose return value does not match the step's annotated output, as ZenML
    does -- but ZenML checks it after the try's ``on_end``, too late for our ledger, which
    would hold the try committed and the run open. The last hook, so it sees the value
    ZenML gets; where the project's contracts run, their interface check comes first."""

    name = "zenml-output"

    def __init__(self) -> None:
        self._interfaces: dict[Callable[..., Any], Interface] = {}

    def after(self, ctx: StepContext, spec: StepSpec, output: Any) -> Any:
        found = self._interfaces.get(spec.fn)
        if found is None:
            found = self._interfaces[spec.fn] = interface_of(spec)
        if isinstance(output, list) and found.output is tuple:
            return output  # ZenML takes a list for several outputs too
        try:
            found.check_output(output)
        except ContractViolation as exc:  # not a contract of the project's: ZenML's check
            raise StepOutputRefused(str(exc)) from None
        return output


class StepOutputRefused(TypeError):
    """A step returned a value that ZenML refuses for its annotated output."""


_PLANS: dict[tuple[str, str, str | None], dict[str, list[str]]] = {}


def _plan(pipeline: str, home: str | None) -> dict[str, list[str]]:
    """The wrapped steps of the running ZenML run that record into ``pipeline``, each with
    the wrapped steps it comes after (directly or through steps of other pipelines): what
    ZenML skips when one of them fails is downstream of it in our ledger too."""
    ctx = get_step_context()
    cache_key = (str(ctx.pipeline_run.id), pipeline, home)
    found = _PLANS.get(cache_key)
    if found is not None:
        return found
    snapshot = ctx.pipeline_run.snapshot
    configs = dict(snapshot.step_configurations) if snapshot is not None else {}

    def ours(step: Any) -> bool:
        opts = step.config.extra.get(OPTIONS)
        if not isinstance(opts, dict):
            return False
        named = opts.get("pipeline") or str(ctx.pipeline.name)
        return named == pipeline and (None in (home, opts.get("home"))
                                      or home == opts.get("home"))

    wrapped = {n for n, s in configs.items() if ours(s)}
    found = {}
    for name in configs:
        if name not in wrapped:
            continue
        seen: set[str] = set()
        todo = list(configs[name].spec.upstream_steps)
        while todo:
            up = todo.pop()
            if up in seen or up not in configs:
                continue
            seen.add(up)
            todo.extend(configs[up].spec.upstream_steps)
        found[name] = sorted(seen & wrapped)
    if any(k[0] != cache_key[0] for k in _PLANS):
        _PLANS.clear()  # a new run: forget the last one's
    _PLANS[cache_key] = found
    return found


def _call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """One try of a wrapped step's body: our hooks before, the body, our hooks and contracts
    after; the attempt recorded in the ledger (a retry of a step that already failed for
    good is refused here, before the body)."""
    opts = _options()
    if opts is None:  # the step's configuration lost our options: run it as it is
        return fn(*args, **kwargs)
    attempt = _begin(opts, fn, args, kwargs)
    try:
        output = fn(**attempt.inputs)
    except Exception as exc:
        _fail(attempt, exc)
    return _end(attempt, output)


async def _call_async(fn: Callable[..., Any], args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> Any:
    """:func:`_call` of an ``async def`` step: the body is awaited between our hooks (ZenML
    runs the wrapper on an event loop of its own, as it runs an async step)."""
    opts = _options()
    if opts is None:
        return await fn(*args, **kwargs)
    attempt = _begin(opts, fn, args, kwargs)
    try:
        output = await fn(**attempt.inputs)
    except Exception as exc:
        _fail(attempt, exc)
    return _end(attempt, output)


def _begin(opts: dict[str, Any], fn: Callable[..., Any], args: tuple[Any, ...],
           kwargs: dict[str, Any]) -> GuardedAttempt:
    bridge, name, steps = _bridge(opts, fn)
    bound = inspect.signature(fn).bind(*args, **kwargs)
    bound.apply_defaults()
    with _stopping(bridge, name):
        attempt = bridge.begin(host_attempt(name), dict(bound.arguments), run_steps=steps)
    _OPEN[str(get_step_context().step_run.id)] = attempt
    return attempt


def _fail(attempt: GuardedAttempt, exc: Exception) -> NoReturn:
    _OPEN.pop(str(get_step_context().step_run.id), None)
    with _stopping(attempt.bridge, attempt.at.step):
        attempt.fail(exc)


def _end(attempt: GuardedAttempt, output: Any) -> Any:
    _OPEN.pop(str(get_step_context().step_run.id), None)
    with _stopping(attempt.bridge, attempt.at.step):
        return attempt.end(output)


@contextlib.contextmanager
def _stopping(bridge: StepBridge, name: str) -> Iterator[None]:
    """Where ZenML's execution mode stops the whole run after a failed step (``fail_fast``,
    ``stop_on_failure``), a step of ours that failed for good also ends, in our ledger, the
    steps that have not started: ZenML will not run them."""
    from zenml.enums import ExecutionMode

    try:
        yield
    except AttemptNotRetryable:
        ctx = get_step_context()
        mode = ctx.pipeline_run.config.execution_mode
        if mode in (ExecutionMode.FAIL_FAST, ExecutionMode.STOP_ON_FAILURE):
            bridge.skip_pending(str(ctx.pipeline_run.id), name,
                                f"ZenML stopped the run after step {name!r} failed "
                                f"(execution mode {mode.value})")
        raise


class StepStopped(Exception):
    """A try that ended without its body returning or raising an error (ZenML stopped the
    step, or the body raised ``KeyboardInterrupt`` or ``SystemExit``)."""


def start_hook() -> None:
    """ZenML's ``on_start`` of a wrapped step (each try): opens the step's bridge (ledger,
    store, contracts, hooks; once per process) as the try starts, then runs the step's own
    ``on_start``."""
    opts = _options()
    if opts is not None:
        _bridge(opts)[0].session()
        _user_hook(opts, "start", ())


def end_hook(exc: BaseException | None = None) -> None:
    """ZenML's ``on_end`` of a wrapped step (each try): a try the body left open in the
    ledger (stopped by ZenML, ``KeyboardInterrupt``, ``SystemExit``) is recorded as failed
    with the reason; then the step's own ``on_end`` runs."""
    from reliability.adapters.core import AttemptFailed

    opts = _options()
    if opts is None:
        return
    attempt = _OPEN.pop(str(get_step_context().step_run.id), None)
    if attempt is not None:
        reason = repr(exc) if exc is not None else "ZenML stopped the step"
        with contextlib.suppress(AttemptFailed), _stopping(attempt.bridge, attempt.at.step):
            attempt.fail(StepStopped(f"the try ended without a result: {reason} "
                                     f"(pid {os.getpid()})"))
    _user_hook(opts, "end", (exc,))


def _user_hook(opts: dict[str, Any], kind: str, args: tuple[Any, ...]) -> None:
    src = (opts.get("user_hooks") or {}).get(kind)
    if not src:
        return
    from zenml.hooks.validation import bind_optional_hook_args

    func = source_utils.load(Source.model_validate(src))
    func(*bind_optional_hook_args(func, args))


_OUR_HOOKS = {f"{__name__}.start_hook", f"{__name__}.end_hook"}
