"""Declaring pipelines: steps, their dependencies, retries and timeouts, in plain Python.

    pipe = Pipeline("reference", params=TrainParams)

    @pipe.step(retry=Retry(attempts=3), timeout=60)
    def ingest(ctx: StepContext, params: TrainParams) -> pd.DataFrame: ...

    @pipe.step
    def validate(ingest: pd.DataFrame) -> pd.DataFrame: ...   # depends on `ingest`

A step's parameters name what it receives: ``ctx`` (a :class:`StepContext`), ``params`` (the
run's parameter model) and, for every other parameter, the output of the upstream step of that
name (or of the step mapped to it with ``inputs={"param": "step"}``). :meth:`Pipeline.validate`
rejects duplicate names, unknown dependencies and cycles before anything runs.
"""

from __future__ import annotations

import datetime as dt
import inspect
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import field
from pathlib import Path
from time import time as _now
from typing import TYPE_CHECKING, Any, overload

from reliability._record import record

if TYPE_CHECKING:
    import random

from reliability.errors import CycleError, DefinitionError
from reliability.events import STEP_EMITTABLE, check_step_event

__all__ = ["NO_ATTEMPT_SCOPE", "DataInterval", "Pipeline", "Retry", "StepContext", "StepHook",
           "StepSpec", "attempt_scope"]

_RESERVED = frozenset({"ctx", "params"})


@record(frozen=True, slots=True)
class DataInterval:
    """A half-open data interval ``[start, end)``; steps read it instead of "now"."""

    start: dt.datetime
    end: dt.datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise DefinitionError(
                f"data interval {self.start}..{self.end} must be time-zone aware. "
                "Fix: pass datetimes with tzinfo (e.g. datetime.UTC)")
        if self.end <= self.start:
            raise DefinitionError(
                f"data interval end {self.end.isoformat()} must be after start "
                f"{self.start.isoformat()}. Fix: swap or widen the bounds")

    def key(self) -> str:
        return f"{self.start.isoformat()}/{self.end.isoformat()}"

    def to_utc(self) -> DataInterval:
        """The same instants in UTC: one spelling per interval in keys and the ledger."""
        return DataInterval(self.start.astimezone(dt.UTC), self.end.astimezone(dt.UTC))

    @classmethod
    def parse(cls, text: str) -> DataInterval:
        try:
            parts = text.split("/")
            if len(parts) != 2:
                raise ValueError("it needs exactly one '/' between START and END")
            start, end = dt.datetime.fromisoformat(parts[0]), dt.datetime.fromisoformat(parts[1])
        except ValueError as exc:
            raise DefinitionError(
                f"data interval {text!r} is not START/END in ISO 8601 ({exc}). "
                "Fix: write e.g. 2026-01-01T00:00:00+00:00/2026-01-02T00:00:00+00:00") from None
        return cls(start, end)  # its own errors name the bounds and the fix


@record(frozen=True, slots=True)
class Retry:
    """Retry policy: ``attempts`` in all, exponential backoff with jitter.

    ``retry_on`` is a tuple of exception types, or a predicate taking the exception; contract
    violations never retry (the data will not change). ``on_worker_lost`` and ``on_timeout``
    say whether a killed or timed-out attempt is retried. The budget is per execution: a
    resumed run gives each unfinished step ``attempts`` tries again, while attempt numbers in
    the ledger keep counting across resumes.
    """

    attempts: int = 1
    backoff: float = 0.5
    multiplier: float = 2.0
    max_backoff: float = 60.0
    jitter: float = 0.1
    retry_on: tuple[type[BaseException], ...] | Callable[[BaseException], bool] = (Exception,)
    on_worker_lost: bool = True
    on_timeout: bool = True

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise DefinitionError(
                f"Retry(attempts={self.attempts}) must be at least 1. "
                "Fix: use attempts=1 for no retries")
        if self.backoff < 0 or self.max_backoff < 0 or self.multiplier < 1 or self.jitter < 0:
            raise DefinitionError(
                "Retry backoff, max_backoff and jitter must be >= 0 and multiplier >= 1. "
                f"Got backoff={self.backoff}, multiplier={self.multiplier}, "
                f"max_backoff={self.max_backoff}, jitter={self.jitter}")

    def delay(self, failed_attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after attempt number ``failed_attempt`` (1-based) failed."""
        base = min(self.backoff * self.multiplier ** (failed_attempt - 1), self.max_backoff)
        if not self.jitter or not base:
            return base
        import random

        spread = base * self.jitter
        return max(0.0, base + (rng or random).uniform(-spread, spread))

    def should_retry(self, exc: BaseException) -> bool:
        from reliability.errors import ContractViolation

        if isinstance(exc, ContractViolation):
            return False
        if isinstance(self.retry_on, tuple):
            return isinstance(exc, self.retry_on)
        return bool(self.retry_on(exc))


class StepContext:
    """What a running step knows about its run. Passed as the ``ctx`` parameter.

    ``staging_dir`` is the attempt's private directory for files the step writes (return a
    :class:`~pathlib.Path` inside it to make a file the step's output); it is created on first
    use, so steps that never touch it cost no filesystem work.

    ``input_files`` maps each data input's parameter to the committed object it was loaded
    from (read-only), for steps that must pass an upstream artifact on byte for byte --
    re-serializing a loaded object (e.g. pickling a model again) need not give the same
    bytes in another process. Empty where inputs do not come from the store.
    """

    __slots__ = ("_emitted", "_staging_dir", "_staging_ready", "attempt", "input_files",
                 "interval", "log", "params", "pipeline", "run_id", "step")

    def __init__(self, pipeline: str, run_id: str, step: str, attempt: int,
                 interval: DataInterval | None, staging_dir: Path, params: Any = None,
                 log: logging.Logger | None = None,
                 input_files: Mapping[str, Path] | None = None) -> None:
        self.input_files: Mapping[str, Path] = dict(input_files or {})
        self.pipeline = pipeline
        self.run_id = run_id
        self.step = step
        self.attempt = attempt
        self.interval = interval
        self.params = params
        self.log = log or logging.getLogger("reliability.step")
        self._staging_dir = Path(staging_dir)
        self._staging_ready = False
        self._emitted: list[tuple[str, dict[str, Any], float]] = []

    @property
    def staging_dir(self) -> Path:
        if not self._staging_ready:
            self._staging_dir.mkdir(parents=True, exist_ok=True)
            self._staging_ready = True
        return self._staging_dir

    def __repr__(self) -> str:
        return (f"StepContext(pipeline={self.pipeline!r}, run_id={self.run_id!r}, "
                f"step={self.step!r}, attempt={self.attempt}, interval={self.interval!r})")

    def emit(self, kind: str, **details: Any) -> None:
        """Publish an event from the step: a kind of your own (``ctx.emit("progress",
        done=3)``; it travels as ``EventKind.CUSTOM`` with ``{"name", "data"}``), or one
        a hook may emit (``contract_checked``, ``fault_injected``). Details are JSON values.

        It reaches the runner's bus (and the ledger) when the attempt ends, stamped with
        the time of this call. A bad kind or detail raises
        :class:`~reliability.errors.DefinitionError` here, at the call.
        """
        if kind in STEP_EMITTABLE:  # the hooks' kinds: the hot path, nothing to check
            self._emitted.append((kind, details, _now()))
            return
        event_kind, checked = check_step_event(kind, details)
        self._emitted.append((event_kind.value, checked, _now()))


NO_ATTEMPT_SCOPE: AbstractContextManager[None] = nullcontext()
"""What :meth:`StepHook.attempt` returns when a hook has nothing to undo for an attempt
(stateless, shared): :func:`attempt_scope` skips it at no cost."""


class StepHook:
    """Runs in the worker around each step body; contracts and chaos are hooks.

    ``before`` may inspect or replace the inputs, ``after`` the output; raising fails the
    attempt. ``attempt`` wraps the whole attempt: whatever a hook changes in the worker
    process (resource limits, signal handlers, threads, external state) it undoes when that
    context exits, so nothing reaches the next attempt the worker runs. Hooks must be
    picklable-free of process state: they are inherited by workers.
    """

    name = "hook"

    def attempt(self, ctx: StepContext, spec: StepSpec) -> AbstractContextManager[None]:
        """The attempt's scope: entered before its inputs are read, exited after its output
        was written or the attempt failed (an exception raised on exit fails the attempt)."""
        return NO_ATTEMPT_SCOPE

    def before(self, ctx: StepContext, spec: StepSpec, inputs: dict[str, Any]
               ) -> dict[str, Any]:
        return inputs

    def after(self, ctx: StepContext, spec: StepSpec, output: Any) -> Any:
        return output


def attempt_scope(hooks: Sequence[StepHook], ctx: StepContext, spec: StepSpec
                  ) -> AbstractContextManager[None]:
    """Every hook's :meth:`StepHook.attempt` as one scope around an attempt (the first
    hook's outermost); free when no hook has one."""
    scopes = [scope for scope in (hook.attempt(ctx, spec) for hook in hooks)
              if scope is not NO_ATTEMPT_SCOPE]
    if not scopes:
        return NO_ATTEMPT_SCOPE
    return scopes[0] if len(scopes) == 1 else _nested(scopes)


@contextmanager
def _nested(scopes: Sequence[AbstractContextManager[None]]) -> Iterator[None]:
    with ExitStack() as stack:
        for scope in scopes:
            stack.enter_context(scope)
        yield


@record(frozen=True, slots=True)
class StepSpec:
    """A declared step. ``inputs`` maps function parameter -> upstream step name."""

    name: str
    fn: Callable[..., Any]
    inputs: Mapping[str, str]
    after: tuple[str, ...] = ()
    retry: Retry = Retry()
    timeout: float | None = None
    wants_ctx: bool = False
    wants_params: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def upstream(self) -> tuple[str, ...]:
        seen = dict.fromkeys([*self.inputs.values(), *self.after])
        return tuple(seen)


_PIPELINE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")


class Pipeline:
    """A named DAG of steps."""

    def __init__(self, name: str, *, params: type[Any] | None = None,
                 description: str = "") -> None:
        if not isinstance(name, str) or not _PIPELINE_NAME.fullmatch(name):
            raise DefinitionError(
                f"pipeline name {name!r} must be 1-100 ASCII letters, digits, '-' or '_', "
                "starting with a letter or digit (it names runs, files and metric labels). "
                "Fix: rename the pipeline")
        self.name = name
        self.params_model = params
        self.description = description
        self.steps: dict[str, StepSpec] = {}

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r}, steps={list(self.steps)})"

    @overload
    def step(self, fn: Callable[..., Any], /) -> Callable[..., Any]: ...
    @overload
    def step(self, fn: None = None, /, *, name: str | None = None,
             inputs: Mapping[str, str] | None = None, after: Iterable[str] = (),
             retry: Retry | None = None, timeout: float | None = None,
             tags: Mapping[str, str] | None = None
             ) -> Callable[[Callable[..., Any]], Callable[..., Any]]: ...

    def step(self, fn: Callable[..., Any] | None = None, /, *, name: str | None = None,
             inputs: Mapping[str, str] | None = None, after: Iterable[str] = (),
             retry: Retry | None = None, timeout: float | None = None,
             tags: Mapping[str, str] | None = None) -> Any:
        """Declare a step (usable bare, ``@pipe.step``, or with options)."""

        def register(f: Callable[..., Any]) -> Callable[..., Any]:
            self.add(f, name=name, inputs=inputs, after=after, retry=retry,
                     timeout=timeout, tags=tags)
            return f

        return register(fn) if fn is not None else register

    def add(self, fn: Callable[..., Any], *, name: str | None = None,
            inputs: Mapping[str, str] | None = None, after: Iterable[str] = (),
            retry: Retry | None = None, timeout: float | None = None,
            tags: Mapping[str, str] | None = None) -> StepSpec:
        step_name = name or fn.__name__
        if step_name in self.steps:
            raise DefinitionError(
                f"pipeline {self.name!r} already has a step named {step_name!r}. "
                "Fix: give the step a unique name (name=...)")
        if timeout is not None and timeout <= 0:
            raise DefinitionError(
                f"step {step_name!r}: timeout={timeout} must be > 0 seconds. "
                "Fix: pass a positive timeout, or None for no timeout")
        mapping = dict(inputs or {})
        params = inspect.signature(fn).parameters
        for mapped in mapping:
            if mapped not in params:
                raise DefinitionError(
                    f"step {step_name!r}: inputs maps {mapped!r}, which is not a parameter of "
                    f"{fn.__qualname__}{inspect.signature(fn)}. Fix: use one of {list(params)}")
        for pname, p in params.items():
            if pname in _RESERVED or pname in mapping:
                continue
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.default is not p.empty:
                continue
            mapping[pname] = pname
        spec = StepSpec(
            name=step_name, fn=fn, inputs=mapping, after=tuple(after),
            retry=retry or Retry(), timeout=timeout, wants_ctx="ctx" in params,
            wants_params="params" in params, tags=dict(tags or {}),
        )
        self.steps[step_name] = spec
        return spec

    def validate(self) -> list[str]:
        """Check the graph; return the steps in a topological order."""
        if not self.steps:
            raise DefinitionError(f"pipeline {self.name!r} has no steps. Fix: add a step")
        for spec in self.steps.values():
            for dep in spec.upstream:
                if dep not in self.steps:
                    close = [s for s in self.steps if s.lower() == dep.lower()]
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    raise DefinitionError(
                        f"step {spec.name!r} depends on {dep!r}, which is not a step of "
                        f"pipeline {self.name!r}{hint}. Fix: declare {dep!r} or use one of "
                        f"{sorted(self.steps)}")
        return self._toposort()

    def _toposort(self) -> list[str]:
        state: dict[str, int] = {}
        order: list[str] = []
        path: list[str] = []

        def visit(node: str) -> None:
            state[node] = 1
            path.append(node)
            for dep in self.steps[node].upstream:
                if state.get(dep) == 1:
                    cycle = [*path[path.index(dep):], dep]
                    raise CycleError(self.name, list(reversed(cycle)))
                if dep not in state:
                    visit(dep)
            path.pop()
            state[node] = 2
            order.append(node)

        for name in self.steps:
            if name not in state:
                visit(name)
        return order

    def downstream(self, step: str) -> set[str]:
        """Every step that (transitively) depends on ``step``."""
        children: dict[str, list[str]] = {s: [] for s in self.steps}
        for spec in self.steps.values():
            for dep in spec.upstream:
                children.setdefault(dep, []).append(spec.name)
        out: set[str] = set()
        todo = [step]
        while todo:
            for child in children.get(todo.pop(), []):
                if child not in out:
                    out.add(child)
                    todo.append(child)
        return out

    def make_params(self, values: Mapping[str, Any] | None) -> Any:
        """Build the run's parameter object from plain values (validated)."""
        if self.params_model is None:
            if values:
                raise DefinitionError(
                    f"pipeline {self.name!r} declares no parameters but got {sorted(values)}. "
                    "Fix: declare Pipeline(..., params=Model) or drop the parameters")
            return None
        from pydantic import BaseModel, ValidationError

        if isinstance(values, self.params_model):
            return values
        if issubclass(self.params_model, BaseModel):
            self._reject_unknown_params(values or {})
            try:
                return self.params_model.model_validate(dict(values or {}))
            except ValidationError as exc:
                err = exc.errors()[0]
                loc = ".".join(str(p) for p in err["loc"])
                raise DefinitionError(
                    f"pipeline {self.name!r} parameter {loc}: {err['msg']}. "
                    "Fix: pass a valid value (reliability run --param KEY=VALUE)") from None
        return self.params_model(**dict(values or {}))

    def _reject_unknown_params(self, values: Mapping[str, Any]) -> None:
        """A misspelt parameter is an error, not a silently ignored value."""
        model: Any = self.params_model
        if model.model_config.get("extra") == "allow":
            return
        known = sorted(f.alias or name for name, f in model.model_fields.items())
        for key in values:
            if key not in known and key not in model.model_fields:
                import difflib

                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise DefinitionError(
                    f"pipeline {self.name!r} has no parameter {key!r}. "
                    f"Fix: {hint}use one of {known}")


def load_pipeline(ref: str) -> Pipeline:
    """Import ``"package.module:attribute"`` and return the Pipeline it names."""
    import importlib
    import sys

    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise DefinitionError(
            f"pipeline reference {ref!r} is not 'module:attribute'. "
            "Fix: write e.g. pipelines.reference:pipeline")
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise DefinitionError(
            f"cannot import {module_name!r} for pipeline {ref!r}: {exc}. Fix: run from the "
            "project root or put the module on PYTHONPATH") from None
    if not hasattr(module, attr):
        public = sorted(n for n, v in vars(module).items() if isinstance(v, Pipeline))
        raise DefinitionError(
            f"module {module_name!r} has no {attr!r} for pipeline {ref!r}. Fix: name one of "
            f"its pipelines ({', '.join(public) or 'it defines none'})")
    obj = getattr(module, attr)
    if not isinstance(obj, Pipeline):
        raise DefinitionError(
            f"{ref!r} is {type(obj).__name__}, not a Pipeline. Fix: point at the Pipeline "
            "object, e.g. module:pipeline")
    return obj


def source_version(fn: Callable[..., Any]) -> str:
    """Twelve hex digits of the sha256 of ``fn``'s source (its qualified name when it has
    no source): the code version of one step."""
    from reliability._sha import sha256

    return sha256(_source(fn)).hexdigest()[:12]


def code_version(pipeline: Pipeline) -> str:
    """The code version of ``pipeline`` the ledger records with each run: twelve hex digits
    of the sha256 of its step functions' sources, in step-name order."""
    from reliability._sha import sha256

    sha = sha256()
    for name in sorted(pipeline.steps):
        sha.update(_source(pipeline.steps[name].fn))
    return sha.hexdigest()[:12]


def code_fingerprint(pipeline: Pipeline) -> list[Any] | None:
    """What :func:`code_version` depends on, found without reading any source: each step
    function's file (path, size, modification time) and first line. None when a step has
    no source file of its own to stat (a callable object, a lambda built at run time)."""
    import os

    marks: list[Any] = []
    for name in sorted(pipeline.steps):
        fn: Any = pipeline.steps[name].fn
        while hasattr(fn, "__wrapped__"):  # what inspect.getsource reads
            fn = fn.__wrapped__
        code = getattr(fn, "__code__", None)
        if code is None or code.co_name == "<lambda>":
            return None
        try:
            st = os.stat(code.co_filename)
        except OSError:
            return None
        marks.append((name, code.co_filename, st.st_size, st.st_mtime_ns,
                      code.co_firstlineno, getattr(fn, "__qualname__", "")))
    return marks


def _source(fn: Callable[..., Any]) -> bytes:
    try:
        return inspect.getsource(fn).encode()
    except (OSError, TypeError):
        return str(getattr(fn, "__qualname__", repr(fn))).encode()
