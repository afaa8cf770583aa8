"""Executing a claimed interval through the run assembly, and finding the pipeline to run.

Each pipeline gets one :class:`~reliability.assembly.Assembly` (contracts, SLA monitor,
metrics, runbooks on the shared bus); each run gets its own runner from it (and so its own
ledger connection), so runs of different intervals proceed in parallel threads. An
interrupted run (its process died, or it was cancelled) is resumed by id: committed steps
are kept.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reliability.errors import DefinitionError, LedgerError
from reliability.runs import Trigger
from reliability.schedule.scheduler import RunOutcome, RunRequest

if TYPE_CHECKING:
    from reliability.assembly import Assembly, RunOptions
    from reliability.events import EventBus
    from reliability.pipeline import Pipeline, StepHook

__all__ = ["RunnerExecutor", "resolve_pipeline"]


def resolve_pipeline(ref_or_name: str | None, *, start: str | Path | None = None
                     ) -> Pipeline:
    """A ``module:attr`` reference, or the name of the project's pipeline (or None: it)."""
    from reliability.pipeline import load_pipeline
    from reliability.project import find_project

    if ref_or_name and ":" in ref_or_name:
        return load_pipeline(ref_or_name)
    project = find_project(start)
    pipe = project.load_pipeline()
    if ref_or_name and pipe.name != ref_or_name:
        raise DefinitionError(
            f"pipeline {ref_or_name!r} is neither a module:attr reference nor the project's "
            f"pipeline (which is {pipe.name!r} from {project.pipeline_ref}). Fix: pass "
            "module:attr, e.g. pipelines.reference:pipeline")
    return pipe


class RunnerExecutor:
    """Runs :class:`RunRequest` s through the run assembly under ``home``.

    ``pipelines`` maps pipeline name -> Pipeline; unknown names are resolved from the
    request's ``ref`` (or the project) on first use. ``hooks`` builds extra worker-side
    hooks for a pipeline (contracts are the assembly's); ``bus`` receives the runs'
    lifecycle events; ``options`` are the rest of the assembly's options.
    """

    def __init__(self, home: str | Path, *, pipelines: Mapping[str, Pipeline] | None = None,
                 workers: int | None = None, bus: EventBus | None = None,
                 hooks: Callable[[Pipeline], Sequence[StepHook]] | None = None,
                 options: RunOptions | None = None) -> None:
        from reliability.assembly import RunOptions
        from reliability.events import EventBus

        self.home = Path(home)
        self.pipelines: dict[str, Pipeline] = dict(pipelines or {})
        self.bus = bus if bus is not None else EventBus()
        self.hooks = hooks
        base = options or RunOptions()
        self.options = base
        self.workers = workers if workers is not None else base.workers
        self._lock = threading.Lock()
        self._active: set[Any] = set()
        self.assemblies: dict[str, Assembly] = {}

    def pipeline(self, name: str, ref: str | None) -> Pipeline:
        with self._lock:
            if name not in self.pipelines:
                pipe = resolve_pipeline(ref or name)
                if pipe.name != name:
                    raise DefinitionError(
                        f"{ref!r} loads pipeline {pipe.name!r}, not {name!r}. Fix: make the "
                        "schedule's pipeline name match the loaded pipeline")
                self.pipelines[name] = pipe
            return self.pipelines[name]

    def assembly(self, name: str, ref: str | None = None) -> Assembly:
        """The pipeline's assembly (built on first use, then shared by its runs)."""
        import dataclasses

        from reliability.assembly import assemble

        pipe = self.pipeline(name, ref)
        with self._lock:
            asm = self.assemblies.get(name)
            if asm is None:
                opts = dataclasses.replace(
                    self.options, home=self.home, workers=self.workers, bus=self.bus,
                    hooks=[*self.options.hooks, *(self.hooks(pipe) if self.hooks else ())])
                asm = self.assemblies[name] = assemble(pipe, opts)
            return asm

    def __call__(self, req: RunRequest) -> RunOutcome:
        runner = self.assembly(req.pipeline, req.ref).new_runner()
        with self._lock:
            self._active.add(runner)
        try:
            res = self._run(runner, req)
        finally:
            with self._lock:
                self._active.discard(runner)
            runner.close()
            runner.ledger.close()
        error = next(iter(res.failed.values()), None) if res.failed else None
        return RunOutcome(res.run_id, res.status, error)

    def cancel(self) -> None:
        """Cancel the runs in progress as SIGINT would: they end 'cancelled', resumable."""
        with self._lock:
            active = list(self._active)
        for runner in active:
            runner.cancel()

    def close(self) -> None:
        """Stop the assemblies' monitors and metrics servers."""
        with self._lock:
            assemblies, self.assemblies = list(self.assemblies.values()), {}
        for asm in assemblies:
            asm.close()

    @staticmethod
    def _run(runner: Any, req: RunRequest) -> Any:
        if req.resume:
            try:
                rec = runner.ledger.get_run(req.run_id)
            except LedgerError:
                rec = None  # died before the run was recorded: start it under the same id
            if rec is not None and rec.run_id == req.run_id:
                return runner.resume(req.run_id)
        return runner.run(dict(req.params), interval=req.interval, run_id=req.run_id,
                          resume=False, trigger=_trigger(req.trigger), source=req.schedule)


def _trigger(source: str) -> Trigger:
    """The scheduler's fire sources as run triggers."""
    if source in ("backfill",):
        return Trigger.BACKFILL
    if source in ("schedule", "catchup", "timer"):
        return Trigger.SCHEDULE
    return Trigger.TRIGGER  # http, file, partition, cli
