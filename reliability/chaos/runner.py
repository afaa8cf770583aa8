"""Running an experiment: baseline, steady state before, method, steady state after, rollbacks.

    journal = run_experiment("chaos/kill-train.yaml")        # -> Journal
    journal.status  # passed | deviated | aborted | failed

1. Leases a dead controller left behind are undone (toxics removed, proxies re-enabled).
2. The target comes up: an embedded Toxiproxy-compatible server (unless ``target.proxy_api``
   names one), the services it fronts, and a proxy per service; the pipeline's parameter
   is pointed at the proxy.
3. A fault-free baseline run; the steady-state hypothesis must hold on it.
4. The method: the same run with the chaos hook in the workers and the controller on the
   bus; abort conditions can cancel it.
5. The hypothesis again on the chaos run: success, SLOs, outputs equal to the baseline,
   one commit per step, contracts held.
6. Rollbacks always run (``finally``), whatever happened; then the journal is written.

SIGINT or SIGTERM during the experiment interrupts it: a run in progress is cancelled (by the
runner, as for any run), anything else unwinds, rollbacks still run, and the verdict is
``aborted`` with the signal as the reason: an interrupted run proves nothing about the steady
state. A signal that arrives once rollbacks have begun lets them finish.
"""

from __future__ import annotations

import importlib
import logging
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from reliability.assembly import RunOptions
from reliability.chaos.controller import AbortRule, Controller
from reliability.chaos.experiment import (
    ExperimentSpec,
    RollbackSpec,
    SteadyState,
    check_experiment,
    current_environment,
    load_experiment,
)
from reliability.chaos.faults import FaultBase, NetworkFault, resolve_after
from reliability.chaos.hook import ChaosHook
from reliability.chaos.journal import FORMAT, Journal, resilience_score
from reliability.chaos.leases import Lease, LeaseStore, ProxyApi, reap_leases
from reliability.errors import ChaosError, ConfigError
from reliability.events import EventBus, EventKind
from reliability.pipeline import Pipeline
from reliability.runner import Ledger, Runner, RunResult
from reliability.runs import Trigger

__all__ = ["check_steady_state", "lease_store", "run_experiment"]

log = logging.getLogger("reliability.chaos")


def lease_store(home: str | Path) -> LeaseStore:
    return LeaseStore(Path(home) / "chaos" / "state.db")


def _probe(name: str, ok: bool, detail: str) -> dict[str, Any]:
    return {"probe": name, "ok": bool(ok), "detail": detail}


def check_steady_state(ss: SteadyState, result: RunResult, ledger: Ledger,
                       baseline: RunResult | None) -> list[dict[str, Any]]:
    """Evaluate the hypothesis on ``result``; ``baseline`` None means 'this is the baseline'."""
    out = []
    if ss.run_succeeds:
        out.append(_probe("run_succeeds", result.ok, f"run status {result.status}"
                          + (f"; failed {sorted(result.failed)}" if result.failed else "")))
    if ss.max_duration is not None:
        out.append(_probe("max_duration", result.duration <= ss.max_duration,
                          f"{result.duration:.3f}s against a limit of {ss.max_duration}s"))
    if ss.outputs_equal_baseline and baseline is not None:
        steps = (sorted(baseline.outputs) if ss.outputs_equal_baseline is True
                 else list(ss.outputs_equal_baseline))
        diff = [s for s in steps if result.outputs.get(s) != baseline.outputs.get(s)]
        out.append(_probe("outputs_equal_baseline", not diff,
                          f"differing or missing: {diff}" if diff else
                          f"{len(steps)} step outputs equal the baseline"))
    if ss.single_commit_per_step:
        out.append(_commit_probe(result, ledger))
    if ss.contracts_hold:
        bad = ledger.events(result.run_id, "contract_violated")
        out.append(_probe("contracts_hold", not bad, f"{len(bad)} contract violation(s)"
                          + (f" in {sorted({e['step'] for e in bad})}" if bad else "")))
    if ss.max_failed_attempts is not None:
        failed = [a for a in ledger.attempts(result.run_id) if a["status"] != "succeeded"]
        out.append(_probe("max_failed_attempts", len(failed) <= ss.max_failed_attempts,
                          f"{len(failed)} failed attempt(s), budget {ss.max_failed_attempts}"))
    return out


def _commit_probe(result: RunResult, ledger: Ledger) -> dict[str, Any]:
    from reliability.runner import ArtifactStore

    commits = ledger.commits(result.run_id)
    per_step: dict[str, list[str]] = {}
    for c in commits:
        per_step.setdefault(c["step"], []).append(c["output_hash"])
    problems = [f"{s}: {len(h)} commits" for s, h in per_step.items() if len(h) != 1]
    problems += [f"{s}: ledger output differs from the commit" for s, h in per_step.items()
                 if result.outputs.get(s) not in h]
    if result.store is not None:
        store = ArtifactStore(result.store)
        problems += [f"{s}: committed object is missing or corrupt" for s, h in per_step.items()
                     if not all(store.verify(x) for x in h)]
    return _probe("single_commit_per_step", not problems,
                  "; ".join(problems) or f"{len(per_step)} steps committed exactly once")


# -- interrupts ------------------------------------------------------------------------
class _Interrupted(BaseException):
    """Raised from the signal handler to unwind an experiment outside a run (like
    KeyboardInterrupt, so no ``except Exception`` on the way swallows it)."""


class _Interrupts:
    """SIGINT/SIGTERM while an experiment runs (main thread only; elsewhere nothing is
    installed). Inside ``Runner.run`` the runner's own handlers cancel the run, and the
    cancelled run is reported with :meth:`note`; anywhere else the first signal raises
    :class:`_Interrupted`. After :meth:`disarm` (rollbacks began) signals are only logged."""

    def __init__(self) -> None:
        self.signal: str | None = None
        self.phase = "setup"
        self._armed = True
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _Interrupts:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    def _handler(self, signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if not self._armed or self.signal is not None:
            log.warning("chaos: %s received; finishing the rollbacks first", name)
            return
        self.note(name)
        raise _Interrupted(name)

    def note(self, name: str) -> None:
        """Record the interruption (the first signal wins)."""
        if self.signal is None and self._armed:
            self.signal = name
            log.warning("chaos: interrupted by %s during the %s; rolling back", name,
                        self.phase)

    def disarm(self) -> None:
        self._armed = False

    def record(self, data: dict[str, Any]) -> None:
        if self.signal is None:
            return
        data["interrupted"] = {"signal": self.signal, "phase": self.phase}
        data["aborted"] = (f"interrupted by {self.signal} during the {self.phase}; an "
                           "interrupted run proves nothing about the steady state")


def _cancelled_by_signal(result: RunResult, ledger: Ledger, ctl: Controller | None,
                         interrupts: _Interrupts) -> bool:
    """A run cancelled by a signal (not by an abort condition) interrupts the experiment."""
    if result.status != "cancelled" or (ctl is not None and ctl.aborted):
        return False
    cancelled = ledger.events(result.run_id, EventKind.RUN_CANCELLED.value)
    sig = cancelled[-1]["details"].get("signal") if cancelled else None
    interrupts.note(str(sig or "a signal"))
    return True


# -- the target -----------------------------------------------------------------------
class _Target:
    """Embedded proxy server, services and proxies for one experiment."""

    def __init__(self, spec: ExperimentSpec, exp_id: str, leases: LeaseStore,
                 seed: int | None = None) -> None:
        self.spec = spec
        self.seed = seed
        self.exp_id = exp_id
        self.leases = leases
        self.api_url: str | None = spec.target.proxy_api
        self.embedded = False
        self.params: dict[str, Any] = {}

    def start(self, stack: ExitStack) -> None:
        from reliability.chaos.target import TargetProcess

        if self.spec.target.mode == "external":
            return
        services = self.spec.target.services
        needs_proxy = bool(services) or any(isinstance(f, NetworkFault)
                                            for f in self.spec.method)
        started = {s.name: s.start for s in services if s.start is not None}
        embed = self.api_url is None and needs_proxy
        if started or embed:
            proc = stack.enter_context(TargetProcess(started, proxy=embed, seed=self.seed))
            if embed:
                self.api_url, self.embedded = proc.api_url, True
        else:
            proc = None
        for svc in services:
            upstream = (f"127.0.0.1:{proc.ports[svc.name]}" if proc and svc.name in started
                        else svc.upstream)
            assert upstream is not None and self.api_url is not None
            api = ProxyApi(self.api_url)
            self.leases.add(Lease(id=f"{self.exp_id}:proxy:{svc.name}", experiment=self.exp_id,
                                  owner_pid=_pid(), host=_hostname(), api=api.url,
                                  proxy=svc.name, kind="proxy", embedded=self.embedded))
            listen = api.create_proxy(svc.name, upstream)
            if svc.param:
                self.params[svc.param] = svc.url.format(listen=listen)


def _pid() -> int:
    import os

    return os.getpid()


def _hostname() -> str:
    import socket

    return socket.gethostname()


def _rollback(spec: RollbackSpec, api_url: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"action": spec.type, "proxy": spec.proxy, "toxic": None,
                             "reason": "declared", "ok": True}
    try:
        if spec.type == "python":
            mod, _, attr = (spec.call or "").partition(":")
            getattr(importlib.import_module(mod), attr)()
        elif api_url is None:
            raise ChaosError("no proxy API to roll back against")
        elif spec.type == "reset_proxy":
            ProxyApi(api_url).reset()
        elif spec.type == "enable_proxy":
            ProxyApi(api_url).set_enabled(spec.proxy or "", True)
        else:
            api = ProxyApi(api_url)
            for name in api.toxics(spec.proxy or ""):
                api.remove_toxic(spec.proxy or "", name)
    except Exception as exc:  # a rollback that fails is reported, and the others still run
        entry.update(ok=False, error=f"{type(exc).__name__}: {exc}")
    return entry


# -- running --------------------------------------------------------------------------
def _mutations(faults: list[FaultBase], project: Any, pipeline: Pipeline,
               file: str | None = None) -> dict[str, Any]:
    if not any(getattr(f, "mutation", None) for f in faults):
        return {}
    from reliability.chaos.contract_faults import resolve_mutations

    return resolve_mutations(faults, getattr(project, "contracts_dir", None), pipeline,
                             file=file)


def _durations(ledger: Ledger, run_id: str) -> dict[str, float]:
    return {a["step"]: (a["ended_at"] or a["started_at"]) - a["started_at"]
            for a in ledger.attempts(run_id) if a["status"] == "succeeded"}


@contextmanager
def _chaos_installed(runner: Runner, ctl: Controller, hook: ChaosHook) -> Iterator[None]:
    runner.hooks.insert(0, hook)
    ctl.attach(runner.bus, runner.cancel)
    try:
        yield
    finally:
        if hook in runner.hooks:
            runner.hooks.remove(hook)


def run_experiment(source: str | Path | dict[str, Any] | ExperimentSpec, project: Any = None,
                   *, seed: int | None = None, home: str | Path | None = None,
                   env: str | None = None, pipeline: Pipeline | None = None,
                   journal_path: str | Path | None = None,
                   report_path: str | Path | None = None, bus: EventBus | None = None,
                   options: RunOptions | None = None) -> Journal:
    """Run one experiment end to end and return its :class:`Journal` (also saved as JSON).

    ``bus`` carries the runs' lifecycle events to your subscribers (SLA monitor, metrics,
    display), as for any other run; ``options`` are the run assembly's options for the
    baseline and chaos runs (home, workers, seed and bus are the experiment's).
    """
    from reliability.project import find_project

    if isinstance(source, ExperimentSpec):
        spec, file = source, None
    else:
        spec, file = load_experiment(source)
    project = project or find_project(Path(file).parent if file else None)
    if pipeline is None:
        pipeline = project.load_pipeline(spec.pipeline)
    check_experiment(spec, pipeline, file=file, env=env)
    seed = spec.seed if seed is None else seed
    home = Path(home) if home is not None else Path(project.home)
    leases = lease_store(home)
    for lease, outcome in reap_leases(leases):
        log.warning("chaos: cleaned up %s %s/%s left by pid %s: %s", lease.kind, lease.proxy,
                    lease.toxic or "", lease.owner_pid, outcome)
    exp_id = f"{seed}-{uuid.uuid4().hex[:8]}"
    data = _new_journal(spec, file, seed, current_environment(env), pipeline.name, exp_id)
    with _Interrupts() as interrupts:
        try:
            _execute(spec, project, pipeline, seed, home, leases, exp_id, data, interrupts,
                     bus, options)
        except _Interrupted:
            pass  # rolled back in _execute; the journal says why it stopped
        finally:
            interrupts.disarm()
            interrupts.record(data)
            leases.close()
    data["ended_at"] = time.time()
    data["duration"] = data["ended_at"] - data["started_at"]
    data["status"] = _verdict(data)
    data["score"] = resilience_score(data)
    journal = Journal(data)
    journal.save(journal_path or home / "chaos" / "journals" / f"{exp_id}.json")
    if report_path is not None:
        from reliability.chaos.report import write_report

        write_report(journal, report_path)
    return journal


def _new_journal(spec: ExperimentSpec, file: str | None, seed: int, env: str, pipeline: str,
                 exp_id: str) -> dict[str, Any]:
    return {
        "format": FORMAT, "experiment": {"title": spec.title, "file": file,
                                         "description": spec.description},
        "seed": seed, "environment": env, "pipeline": pipeline,
        "mode": spec.target.mode, "experiment_id": exp_id, "started_at": time.time(),
        "faults": [], "timeline": [], "attempts": [], "rollbacks": [], "baseline": None,
        "run": None, "aborted": None, "interrupted": None, "error": None,
        "steady_state": {"before": [], "during": [], "after": []},
        "method": [f.model_dump(mode="json") for f in spec.method],
    }


def _verdict(data: dict[str, Any]) -> str:
    if data.get("interrupted"):  # whatever the probes said, they judged an unfinished run
        return "aborted"
    if data["error"] or any(not p["ok"] for p in data["steady_state"]["before"]):
        return "failed"
    if data["aborted"]:
        return "aborted"
    checks = data["steady_state"]["after"] + data["steady_state"]["during"]
    return "passed" if all(p["ok"] for p in checks) else "deviated"


def _execute(spec: ExperimentSpec, project: Any, pipeline: Pipeline, seed: int, home: Path,
             leases: LeaseStore, exp_id: str, data: dict[str, Any], interrupts: _Interrupts,
             bus: EventBus | None = None, options: RunOptions | None = None) -> None:
    target = _Target(spec, exp_id, leases, seed)
    ctl: Controller | None = None
    with ExitStack() as stack:
        try:
            target.start(stack)
            if spec.target.mode == "external":
                interrupts.phase = "method"
                ctl = _external(spec, seed, exp_id, target, leases, data)
            else:
                ctl = _local(spec, project, pipeline, seed, home, target, leases, exp_id, data,
                             interrupts, bus, options)
        except (ConfigError, ChaosError) as exc:
            data["error"] = str(exc)
            raise
        except Exception as exc:
            data["error"] = f"{type(exc).__name__}: {exc}"
            log.exception("chaos: the method failed")
        finally:  # rollbacks always run
            interrupts.disarm()
            if ctl is not None:
                data["rollbacks"].extend(ctl.stop())
            for rb in spec.rollbacks:
                data["rollbacks"].append(_rollback(rb, target.api_url))
            _undo_leftovers(leases, exp_id, target.api_url, data)
            if ctl is not None and ctl.errors:
                _note_error(data, "; ".join(ctl.errors))


def _note_error(data: dict[str, Any], message: str) -> None:
    data["error"] = f"{data['error']}; {message}" if data["error"] else message


def _undo_leftovers(leases: LeaseStore, exp_id: str, api_url: str | None,
                    data: dict[str, Any]) -> None:
    """Undo what the experiment still holds (proxies last, while the server is up). A lease
    whose undo fails is kept, so ``reliability chaos cleanup`` can undo it later."""
    for lease in leases.list(exp_id):
        if lease.kind == "proxy":
            entry = _delete_proxy(lease, api_url)
            data["rollbacks"].append(entry)
            if "error" not in entry:
                leases.remove(lease.id)
            continue
        try:
            lease.undo(ProxyApi(lease.api))
        except ChaosError as exc:
            data["rollbacks"].append({
                "action": f"undo {lease.kind}", "proxy": lease.proxy, "toxic": lease.toxic,
                "reason": "leftover", "ok": False,
                "error": f"{exc} (lease kept for 'reliability chaos cleanup')"})
            continue
        leases.remove(lease.id)


def _delete_proxy(lease: Lease, api_url: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"action": "delete proxy", "proxy": lease.proxy, "toxic": None,
                             "reason": "teardown", "ok": True}
    if api_url is not None:
        try:
            entry["ok"] = ProxyApi(lease.api).delete_proxy(lease.proxy)
        except ChaosError as exc:  # reported; the journal is still written
            entry.update(ok=False, error=str(exc))
    return entry


def _external(spec: ExperimentSpec, seed: int, exp_id: str, target: _Target,
              leases: LeaseStore, data: dict[str, Any]) -> Controller:
    ctl = Controller(spec.method, seed=seed, experiment=exp_id, proxy_api=target.api_url,
                     leases=leases, abort=AbortRule(max_duration=spec.abort.max_duration))
    try:
        ctl.start_method()
        time.sleep(spec.target.duration)
    except BaseException:  # interrupted: undo the faults here, the caller has no controller
        data["rollbacks"].extend(ctl.stop())
        raise
    finally:
        ctl.flush()
        data["timeline"] = ctl.timeline
        data["faults"] = [_fault_entry(e) for e in ctl.timeline
                          if e["kind"] == "fault_injected"]
    return ctl


def _local(spec: ExperimentSpec, project: Any, pipeline: Pipeline, seed: int, home: Path,
           target: _Target, leases: LeaseStore, exp_id: str, data: dict[str, Any],
           interrupts: _Interrupts, bus: EventBus | None = None,
           options: RunOptions | None = None) -> Controller | None:
    import dataclasses

    from reliability.assembly import assemble

    params = {**spec.params, **target.params}
    opts = dataclasses.replace(options or RunOptions(), home=home,
                               workers=spec.target.workers, seed=seed,
                               bus=bus if bus is not None else (options.bus if options else None),
                               environment=data.get("environment"))
    asm = assemble(pipeline, opts, project=project)
    runner = asm.runner
    try:
        mutations = _mutations(list(spec.method), project, pipeline,
                               data["experiment"]["file"])  # a bad name fails before the runs
        interrupts.phase = "baseline"
        base = asm.run(params, run_id=f"{pipeline.name}-chaos-{exp_id}-baseline",
                       resume=False, trigger=Trigger.CHAOS_BASELINE, source=exp_id)
        data["baseline"] = _run_summary(base)
        if _cancelled_by_signal(base, runner.ledger, None, interrupts):
            return None
        data["steady_state"]["before"] = check_steady_state(spec.steady_state, base,
                                                            runner.ledger, None)
        if not all(p["ok"] for p in data["steady_state"]["before"]):
            return None
        durations = _durations(runner.ledger, base.run_id)
        faults = [resolve_after(f, durations) for f in spec.method]
        hook = ChaosHook(faults, seed=seed, experiment=exp_id, proxy_api=target.api_url,
                         leases=leases, embedded_proxy=target.embedded,
                         mutations=mutations, holds_for_kills=True)
        ss = spec.steady_state
        ctl = Controller(faults, seed=seed, experiment=exp_id, proxy_api=target.api_url,
                         leases=leases, embedded_proxy=target.embedded,
                         abort=AbortRule(spec.abort.max_failed_attempts, spec.abort.max_duration),
                         watch=AbortRule(ss.max_failed_attempts, ss.max_duration)
                         if ss.during else None)
        interrupts.phase = "method"
        try:
            with _chaos_installed(runner, ctl, hook):
                ctl.start_method()
                result = asm.run(params, run_id=f"{pipeline.name}-chaos-{exp_id}",
                                 resume=False, trigger=Trigger.CHAOS, source=exp_id)
        except BaseException:  # interrupted or broken before the run ended: undo its faults
            data["rollbacks"].extend(ctl.stop())
            raise
        ctl.flush()
        _cancelled_by_signal(result, runner.ledger, ctl, interrupts)
        data["aborted"] = ctl.aborted
        data["run"] = _run_summary(result)
        data["steady_state"]["during"] = ctl.deviations
        data["steady_state"]["after"] = check_steady_state(ss, result, runner.ledger, base)
        _record_run(data, runner.ledger, result, ctl)
        return ctl
    finally:
        asm.close()


def _run_summary(r: RunResult) -> dict[str, Any]:
    return {"run_id": r.run_id, "status": r.status, "outputs": dict(r.outputs),
            "failed": dict(r.failed), "skipped": list(r.skipped),
            "duration": round(r.duration, 6)}


def _fault_entry(e: dict[str, Any]) -> dict[str, Any]:
    d = dict(e.get("details") or {})
    return {**d, "fault": d.get("fault"), "type": d.get("type"), "step": e.get("step"),
            "attempt": e.get("attempt"), "time": e.get("time")}


def _record_run(data: dict[str, Any], ledger: Ledger, result: RunResult, ctl: Controller
                ) -> None:
    t0 = min((e["time"] for e in ctl.timeline), default=time.time())
    data["timeline"] = [{**e, "t": round(e["time"] - t0, 6)} for e in ctl.timeline]
    data["faults"] = [_fault_entry(e) | {"t": round(e["time"] - t0, 6)}
                      for e in ctl.timeline if e["kind"] == "fault_injected"]
    data["attempts"] = [
        {"step": a["step"], "attempt": a["attempt"], "status": a["status"],
         "error_type": a["error_type"], "error": a["error"], "worker_pid": a["worker_pid"],
         "start": round(a["started_at"] - t0, 6),
         "end": round((a["ended_at"] or a["started_at"]) - t0, 6)}
        for a in ledger.attempts(result.run_id)]
