"""Executing a claimed interval with the local Runner, and finding the pipeline to run.

Each run gets its own :class:`~reliability.runner.Runner` (and so its own ledger
connection), so runs of different intervals can proceed in parallel threads. An interrupted
run (its process died, or it was cancelled) is resumed by id: committed steps are kept.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reliability.errors import DefinitionError, LedgerError
from reliability.schedule.scheduler import RunOutcome, RunRequest

if TYPE_CHECKING:
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
    pipe = load_pipeline(project.pipeline_ref)
    if ref_or_name and pipe.name != ref_or_name:
        raise DefinitionError(
            f"pipeline {ref_or_name!r} is neither a module:attr reference nor the project's "
            f"pipeline (which is {pipe.name!r} from {project.pipeline_ref}). Fix: pass "
            "module:attr, e.g. pipelines.reference:pipeline")
    return pipe


class RunnerExecutor:
    """Runs :class:`RunRequest` s with the local Runner under ``home``.

    ``pipelines`` maps pipeline name -> Pipeline; unknown names are resolved from the
    request's ``ref`` (or the project) on first use. ``hooks`` builds the step hooks for a
    run (contracts, chaos); ``bus`` receives the runs' lifecycle events.
    """

    def __init__(self, home: str | Path, *, pipelines: Mapping[str, Pipeline] | None = None,
                 workers: int | None = None, bus: EventBus | None = None,
                 hooks: Callable[[Pipeline], Sequence[StepHook]] | None = None) -> None:
        self.home = Path(home)
        self.pipelines: dict[str, Pipeline] = dict(pipelines or {})
        self.workers = workers
        self.bus = bus
        self.hooks = hooks
        self._lock = threading.Lock()
        self._active: set[Any] = set()

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

    def __call__(self, req: RunRequest) -> RunOutcome:
        from reliability.runner import Runner

        pipe = self.pipeline(req.pipeline, req.ref)
        runner = Runner(pipe, home=self.home, workers=self.workers, bus=self.bus,
                        hooks=self.hooks(pipe) if self.hooks else ())
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
                          resume=False, trigger=f"{req.trigger}:{req.schedule}")
