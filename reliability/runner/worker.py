"""The worker process: runs one step attempt at a time, forever, until told to stop.

Workers are forked by the runner and inherit the pipeline and the step hooks. They receive a
:class:`Task` over a pipe, load inputs from the artifact store, run the hooks and the step
body, write the output to a staging file (hashing as they write) and answer with a
:class:`Result`. They die with their parent (``PR_SET_PDEATHSIG``) and ignore SIGINT: the
runner alone decides when a worker stops.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Sequence
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reliability._record import record
from reliability.errors import ContractViolation, StorageError
from reliability.pipeline import DataInterval, Pipeline, StepContext, StepHook, attempt_scope
from reliability.runner.store import encode, is_remote, load_input, storage_error

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

__all__ = ["Result", "Task", "worker_main"]


@record(slots=True)
class Task:
    run_id: str
    step: str
    attempt: int
    inputs: dict[str, tuple[str, str]]  # param -> (object path, codec)
    params: Any
    interval: DataInterval | None
    staging_file: str
    quarantine_file: str
    scratch_dir: str  # the attempt's own ctx.staging_dir


@record(slots=True)
class Result:
    ok: bool
    digest: str | None = None
    codec: str | None = None
    size: int = 0
    error_type: str | None = None
    error: str | None = None
    traceback: str | None = None
    retryable: bool = False
    quarantined: str | None = None
    failures: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any], float]] = field(default_factory=list)
    scratch_used: bool = False  # the step made ctx.staging_dir: the runner removes it


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:  # pragma: no cover - exotic libc
            pass


def close_inherited_listeners() -> int:
    """Close listening sockets forked from the runner (metrics exporters, proxies, APIs).

    A worker never accepts connections; holding a copy of a listener would keep its port
    open after the runner closed or disabled it. Other descriptors (log files) are kept.
    """
    import socket

    closed = 0
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # no procfs: nothing we can safely enumerate
        return 0
    for fd in fds:
        if fd <= 2:
            continue
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            continue  # not a socket (or already gone)
        try:
            listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        except OSError:
            listening = 0
        sock.detach()
        if listening:
            os.close(fd)
            closed += 1
    return closed


def worker_main(conn: Connection, pipeline: Pipeline, hooks: Sequence[StepHook],
                parent_pid: int) -> None:
    """Entry point of a worker process."""
    import signal

    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if os.getppid() != parent_pid:  # parent died before prctl took effect
        os._exit(1)
    close_inherited_listeners()
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            os._exit(0)
        if msg is None:
            os._exit(0)
        result = run_task(pipeline, hooks, msg)
        try:
            _send(conn, result)
        except (BrokenPipeError, OSError):
            os._exit(0)


def _send(conn: Connection, result: Result) -> None:
    """Send ``result``; details that cannot be pickled travel as their ``repr``.

    A hook or step may emit an event detail (or a contract failure case) that does not
    pickle; that must not kill the worker and turn a finished attempt into a lost one.
    """
    try:
        conn.send(result)  # pickles fully before writing: nothing partial on failure
    except (BrokenPipeError, OSError):
        raise
    except Exception:
        result.events = [(kind, _plain(details), at) for kind, details, at in result.events]
        result.failures = [_plain(f) for f in result.failures]
        conn.send(result)


def _plain(details: dict[str, Any]) -> dict[str, Any]:
    return {key: _picklable(value) for key, value in details.items()}


def _picklable(value: Any) -> Any:
    import pickle

    try:
        pickle.dumps(value)
    except Exception:
        return repr(value)
    return value


def run_task(pipeline: Pipeline, hooks: Sequence[StepHook], task: Task) -> Result:
    """Run one attempt; never raises (errors become a failed Result)."""
    spec = pipeline.steps[task.step]
    scratch = Path(task.scratch_dir)
    ctx = StepContext(pipeline=pipeline.name, run_id=task.run_id, step=task.step,
                      attempt=task.attempt, interval=task.interval,
                      staging_dir=scratch, params=task.params)
    output: Any = None
    have_output = False
    cache = f"{task.scratch_dir}.in"  # verified local copies of inputs from an object store
    try:
        with attempt_scope(hooks, ctx, spec):  # hooks undo their changes when it exits
            inputs: dict[str, Any] = {}
            files: dict[str, Path] = {}
            for p, (location, codec) in task.inputs.items():  # hashed as read: never corrupt
                inputs[p], files[p] = load_input(location, codec, cache)
            ctx.input_files = files
            for hook in hooks:
                inputs = hook.before(ctx, spec, inputs)
            kwargs = dict(inputs)
            if spec.wants_ctx:
                kwargs["ctx"] = ctx
            if spec.wants_params:
                kwargs["params"] = task.params
            output = spec.fn(**kwargs)
            have_output = True
            for hook in hooks:
                output = hook.after(ctx, spec, output)
            try:
                digest, codec, size = encode(output, task.staging_file)
            except OSError as exc:  # the store, not the step: fail fast if it is unwritable
                raise storage_error(exc, "write the step's output to the store",
                                    task.staging_file) from exc
        return Result(ok=True, digest=digest, codec=codec, size=size, events=ctx._emitted,
                      scratch_used=ctx._staging_ready)
    except BaseException as exc:  # the step's failure is data for the runner
        _discard(task.staging_file)
        res = Result(ok=False, error_type=type(exc).__qualname__,
                     error=str(exc) or repr(exc), traceback=traceback.format_exc(limit=20),
                     retryable=(isinstance(exc, Exception)
                                and not isinstance(exc, StorageError)  # no retry fixes it
                                and spec.retry.should_retry(exc)),
                     events=ctx._emitted, scratch_used=ctx._staging_ready)
        if isinstance(exc, ContractViolation):
            res.failures = exc.failures
            if have_output or exc.direction == "output":
                res.quarantined = _quarantine(output, task.quarantine_file)
        return res
    finally:
        if task.inputs and is_remote(next(iter(task.inputs.values()))[0]):
            import shutil

            shutil.rmtree(cache, ignore_errors=True)


def _discard(location: str) -> None:
    if not is_remote(location):  # the runner drops a remote one (and clears the run's staging)
        with contextlib.suppress(OSError):
            Path(location).unlink(missing_ok=True)


def _quarantine(output: Any, dest: str) -> str | None:
    try:
        encode(output, dest)
    except Exception:
        return None
    return dest
