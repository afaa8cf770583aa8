"""Run assembly: the one place a run gets its hooks.

Every entry point -- ``reliability run`` and ``resume``, backfills, ``schedule serve`` and
its HTTP and file triggers, ``chaos run`` and ``chaos explore``, ``demo``, the pytest
plugins and the Dask executor -- turns (pipeline, parameters, data interval, trigger,
options) into a run here, and nowhere else:

    with assemble("pipelines.reference:pipeline", RunOptions(workers=2)) as asm:
        result = asm.run({"seed": 3}, trigger=Trigger.MANUAL)

The orchestrator adapters run our steps inside another scheduler's tasks: each task process
gets its ledger, store, contracts, hooks and SLA checks from :func:`assemble_task`, the
same pieces under the same options, without a run loop of its own.

The assembly loads the project (``reliability.yaml``), puts the data contracts first among
the worker-side hooks (chaos hooks come from ``options.hooks`` or are installed by the chaos
layer), subscribes the SLA monitor, Prometheus metrics, runbooks and the terminal display to
the run's event bus, and registers the run in the ledger with its typed trigger and
environment. Switching something off is an explicit option, never a different code path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reliability._record import record
from reliability.events import EventBus, EventKind
from reliability.pipeline import DataInterval, Pipeline, StepHook, load_pipeline
from reliability.runs import RunStatus, Trigger, default_environment

if TYPE_CHECKING:
    from reliability.project import Project
    from reliability.runner import Ledger, Runner, RunResult
    from reliability.runner.executor import Executor
    from reliability.runner.store import Store
    from reliability.sla.spec import SLASet

__all__ = ["Assembly", "RunOptions", "TaskAssembly", "assemble", "assemble_task",
           "sla_monitor"]


@record
class RunOptions:
    """How a run is assembled. The defaults are the production setup: contracts, SLA
    monitor and metrics on, the local supervised executor, the project's home."""

    home: str | Path | None = None
    workers: int | None = None
    contracts: bool = True
    sla: bool = True             # SLA monitor, metrics and runbooks
    metrics_port: int | None = None
    display: bool = False        # the live terminal display (the CLI turns it on)
    quiet: bool = False
    environment: str | None = None
    executor: str | Executor | None = None  # None: the project's (executor:), else local
    scheduler: str | None = None  # a Dask scheduler address; None: the project's
                                  # (dask.scheduler:), else a LocalCluster
    hooks: Sequence[StepHook] = ()
    seed: int | None = None
    bus: EventBus | None = None
    monitor: Any = None          # an SLA monitor shared by several assemblies on one bus


@record
class Assembly:
    """A pipeline with its hooks and subscribers, ready to run (a context manager)."""

    project: Project
    pipeline: Pipeline
    options: RunOptions
    bus: EventBus
    runner: Runner
    monitor: Any = None
    notes: list[str] = field(default_factory=list)
    closers: list[Callable[[], None]] = field(default_factory=list)

    # -- what subscribers and adapters read -------------------------------------------
    @property
    def hooks(self) -> list[StepHook]:
        return self.runner.hooks

    @property
    def ledger(self) -> Ledger:
        return self.runner.ledger

    @property
    def store(self) -> Store:
        return self.runner.store

    @property
    def home(self) -> Path:
        return self.runner.home

    @property
    def metrics(self) -> Any:
        """The Prometheus registry the run's metrics are in (None with ``sla=False``)."""
        return self.monitor.metrics.registry if self.monitor is not None else None

    # -- running ----------------------------------------------------------------------
    def run(self, params: Mapping[str, Any] | Any = None, *,
            interval: DataInterval | None = None, trigger: Trigger | str = Trigger.MANUAL,
            source: str | None = None, run_id: str | None = None, resume: bool = True
            ) -> RunResult:
        """Run (or resume the unfinished run with the same key, if ``resume``)."""
        return self.runner.run(params, interval=interval, run_id=run_id, resume=resume,
                               trigger=Trigger.parse(trigger), source=source)

    def resume(self, run_id: str) -> RunResult:
        """Finish an interrupted run: committed steps are kept, the rest run again."""
        return self.runner.resume(run_id)

    def new_runner(self) -> Runner:
        """Another runner with the same hooks, bus, home and executor, for running runs of
        this pipeline in parallel threads (each runner runs one run at a time). Close it
        (``runner.close(); runner.ledger.close()``) when done."""
        return _runner(self.pipeline, self.project, self.options, self.bus, self.hooks)

    def cancel(self) -> None:
        self.runner.cancel()

    def __enter__(self) -> Assembly:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        while self.closers:
            self.closers.pop()()
        self.runner.close()
        self.runner.ledger.close()

    def report(self, result: RunResult) -> int:
        """Print where outputs and the ledger are; return the CLI exit code."""
        from rich.console import Console
        from rich.markup import escape

        con = Console()
        color = {RunStatus.SUCCEEDED: "green", RunStatus.FAILED: "red"}.get(result.status,
                                                                          "yellow")
        con.print(f"\nrun [bold]{escape(result.run_id)}[/] [{color}]{result.status}[/] in "
                  f"{result.duration:.2f}s" + (" (resumed)" if result.resumed else ""))
        notes = [escape(note) for note in self.notes]  # paths and URLs, printed as text
        if self.monitor is not None:
            self.monitor.flush()
            notes += [f"runbook:   {escape(str(p))}" for p in self.monitor.rendered
                      if p.suffix == ".md"]
            notes += [f"[yellow]SLA breach: {escape(str(b.step or 'run'))}: "
                      f"{escape(str(b.error or b.details.get('sla')))}[/]"
                      for b in self.monitor.breaches]
        for note in notes:
            con.print(f"  {note}")
        con.print(f"  ledger:    {escape(str(result.ledger))}")
        con.print(f"  artifacts: {escape(str(result.store))}/objects")
        for step, digest in result.outputs.items():
            con.print(f"    {escape(step):<12} {digest[:16]}")
        for step, err in result.failed.items():
            con.print(f"  [red]failed {escape(step)}: {escape(err)}[/]")
        if result.skipped:
            con.print("  [yellow]not run (upstream failed): "
                      f"{escape(', '.join(result.skipped))}[/]")
        if result.status == RunStatus.CANCELLED:
            con.print(f"  resume with: reliability resume {escape(result.run_id)}")
            return 130
        con.print(f"  audit:     reliability runs show {escape(result.run_id)}")
        return 0 if result.ok else 1


def assemble(pipeline: Pipeline | str | None = None, options: RunOptions | None = None, *,
             project: Project | None = None) -> Assembly:
    """Assemble a run of ``pipeline`` (a :class:`Pipeline`, a ``module:attr`` reference, or
    None for the project's) under ``options``."""
    from reliability.project import find_project

    opts = options or RunOptions()
    project = project or find_project()
    if pipeline is None:
        pipe = project.load_pipeline()
    elif isinstance(pipeline, str):
        pipe = load_pipeline(pipeline)
    else:
        pipe = pipeline
    bus = opts.bus if opts.bus is not None else EventBus()
    notes: list[str] = []
    hooks: list[StepHook] = list(opts.hooks)
    if opts.contracts:
        hook = _contract_hook(project, pipe, notes)
        if hook is not None:
            hooks.insert(0, hook)  # data is checked before chaos corrupts or a step sees it
    runner = _runner(pipe, project, opts, bus, hooks)
    asm = Assembly(project, pipe, opts, bus, runner, notes=notes)
    try:
        if opts.sla:
            _attach_sla(asm)
        if opts.display:
            from reliability.display import RunDisplay

            asm.closers.append(RunDisplay(bus, quiet=opts.quiet).close)
    except BaseException:
        asm.close()
        raise
    return asm


def _runner(pipe: Pipeline, project: Project, opts: RunOptions, bus: EventBus,
            hooks: list[StepHook]) -> Runner:
    from reliability.runner import Runner

    workers = opts.workers if opts.workers is not None else project.spec.workers
    home = Path(opts.home) if opts.home is not None else project.home
    spec = project.spec
    store = project.open_store(home) if spec.store is not None else None
    return Runner(pipe, home=home, workers=workers, bus=bus, hooks=hooks, seed=opts.seed,
                  executor=opts.executor or spec.executor or "local",
                  scheduler=opts.scheduler or spec.dask.scheduler, store=store,
                  environment=opts.environment or default_environment())


def sla_monitor(project: Project, pipeline: Pipeline, bus: EventBus, ledger: Any,
                runbook_dir: str | Path | None = None) -> tuple[Any, list[str]]:
    """The SLA monitor (metrics, live SLA checks, runbooks) of ``pipeline`` on ``bus``,
    started, and notes saying what it loaded. Share one between assemblies on one bus
    with ``RunOptions(monitor=...)``."""
    from reliability.runbooks import RunbookRenderer
    from reliability.sla import SLAMonitor, load_slas

    notes: list[str] = []
    slas = None
    sla_file = project.sla_file
    if sla_file is not None and sla_file.exists():
        loaded = load_slas(sla_file)
        if loaded.pipeline == pipeline.name:
            loaded.check_steps(pipeline.steps)
            slas = loaded
            notes.append(f"SLAs:      {sla_file}")
    renderer = RunbookRenderer([project.runbooks_dir],
                               base_url=slas.runbook_base_url if slas else None)
    kwargs: dict[str, Any] = {"runbook_dir": Path(runbook_dir)} if runbook_dir else {}
    monitor = SLAMonitor(slas, bus, ledger=ledger, runbooks=renderer, **kwargs)
    monitor.start()
    return monitor, notes


def _attach_sla(asm: Assembly) -> None:
    """SLA monitor, metrics and runbooks, all subscribed to the run's bus."""
    monitor = asm.options.monitor
    if monitor is None:
        monitor, notes = sla_monitor(asm.project, asm.pipeline, asm.bus, asm.runner.ledger)
        asm.notes.extend(notes)
        asm.closers.append(monitor.stop)
    asm.monitor = monitor
    if asm.options.metrics_port is not None:
        from reliability.sla import serve_metrics

        server = serve_metrics(monitor.metrics.registry, port=asm.options.metrics_port)
        asm.closers.append(server.close)
        asm.notes.append(f"metrics:   {server.url}")


def _contract_hook(project: Project, pipeline: Pipeline, notes: list[str]) -> StepHook | None:
    directory = project.contracts_dir
    if not directory.is_dir():
        return None
    from reliability import contracts

    cset = contracts.load_contracts(directory, pipeline)
    if not cset:
        return None
    contracts.check_wiring(pipeline, cset)
    notes.append(f"contracts: {len(cset)} from {directory}")
    hook: StepHook = contracts.ContractHook(cset, params_model=pipeline.params_model)
    return hook


# -- a host's task process --------------------------------------------------------------
_TASK_AUDITED = frozenset(EventKind) - {EventKind.STEP_STARTED, EventKind.STEP_SUCCEEDED}
"""What a task process records as ledger events (the attempt rows hold starts and ends)."""


@record
class TaskAssembly:
    """What a host's task process assembles for the steps it runs (see
    :func:`assemble_task`); closed with :meth:`close`."""

    pipeline: Pipeline
    ledger: Ledger
    store: Store
    bus: EventBus
    hooks: list[StepHook]
    """The project's data contracts (first), then ``options.hooks``."""
    code_version: str | None = None
    """The pipeline's code version, when the settings cache knew it."""
    watch: Any = None
    """The task's SLA checks and runbooks (None with ``sla=False``)."""
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        import contextlib

        while self.closers:
            with contextlib.suppress(Exception):
                self.closers.pop()()


def assemble_task(pipeline: Pipeline, options: RunOptions | None = None, *,
                  own_tasks: bool = False) -> TaskAssembly:
    """The assembly of one host task process: the project's ledger and store, its data
    contracts first among the hooks, an event bus whose events the ledger records, and the
    step and run SLAs with their runbooks
    (:class:`~reliability.adapters._watch.TaskWatch`), all under ``options`` (``home``,
    ``contracts``, ``sla``, ``hooks``, ``environment``; the run-loop options do not apply).

    Hosts such as KFP and Metaflow start a process per task, so this stays cheap: what the
    project file, contracts and SLA file say is validated once and cached in the home
    (:mod:`reliability.adapters._settings`), and the contract engine, the SLA file and the
    runbook templates load only when a step needs them. Metrics come from the ledger's
    events (``reliability sla serve``). ``own_tasks``: the pipeline's steps are a team's
    own host tasks (their inputs come from the host; only their own contracts apply).
    """
    from reliability.adapters._settings import pipeline_slas, resolve
    from reliability.runner.ledger import Ledger
    from reliability.runner.store import open_store
    from reliability.runs import ledger_path

    opts = options or RunOptions()
    home = Path(opts.home) if opts.home is not None else None
    loaded: dict[str, Any] = {}  # what is read from the project, at most once

    def once(name: str, make: Callable[[], Any]) -> Any:
        if name not in loaded:
            loaded[name] = make()
        return loaded[name]

    def project() -> Project:
        from reliability.project import find_project

        return once("project", find_project)  # type: ignore[no-any-return]

    def contract_hook(p: Project) -> StepHook | None:
        make = _own_task_contracts if own_tasks else _contract_hook
        return once("contracts", lambda: make(p, pipeline, []))  # type: ignore[no-any-return]

    def slas() -> SLASet | None:
        return once("slas", lambda: pipeline_slas(project(), pipeline))  # type: ignore[no-any-return]

    def renderer() -> Any:
        from reliability.runbooks import RunbookRenderer

        found = slas()
        return once("renderer", lambda: RunbookRenderer(
            [project().runbooks_dir], base_url=found.runbook_base_url if found else None))

    cfg = resolve(pipeline, home, options=[opts.contracts, own_tasks], project=project,
                  sla=opts.sla,
                  has_contracts=lambda p: opts.contracts and contract_hook(p) is not None)
    ledger = Ledger(ledger_path(cfg.home))
    try:
        store = open_store(cfg.store or cfg.home / "store")
        hook = contract_hook(project()) if opts.contracts and cfg.contracts else None
    except BaseException:
        ledger.close()
        raise
    bus = opts.bus if opts.bus is not None else EventBus()
    asm = TaskAssembly(pipeline, ledger, store, bus,
                       [*([hook] if hook is not None else []), *opts.hooks],
                       code_version=cfg.code_version)
    asm.closers.append(ledger.close)
    # a host's runs are recorded here (our runner records only the runs it executes)
    asm.closers.append(bus.subscribe(ledger.record, kinds=_TASK_AUDITED))
    if opts.sla:
        from reliability.adapters._watch import TaskWatch

        asm.watch = TaskWatch(pipeline.name, bus, ledger, cfg.limits, runbooks=True,
                              slas=slas, renderer=renderer)
        asm.closers.append(asm.watch.close)
    return asm


def _own_task_contracts(project: Project, pipeline: Pipeline, notes: list[str]
                        ) -> StepHook | None:
    """The project's contracts of the host tasks registered so far (contracts of other
    tasks of the same DAG or flow are left to the processes that run those)."""
    directory = project.contracts_dir
    if not directory.is_dir():
        return None
    from reliability.contracts import ContractHook
    from reliability.contracts.loader import ContractSet, load_specs

    cset = ContractSet(pipeline=pipeline.name)
    for contract in load_specs(directory, pipeline.name):
        if contract.spec.pipeline == pipeline.name and contract.spec.step in pipeline.steps:
            cset.add(contract)
    if not cset:
        return None
    notes.append(f"contracts: {len(cset)} from {directory}")
    return ContractHook(cset)
