"""Each fault type declares where it runs; the hook and the controller both obey it."""

from __future__ import annotations

import resource
import threading
from pathlib import Path

import pytest

from reliability import Pipeline, StepContext
from reliability.chaos.faults import (
    FAULT_TYPES,
    DiskQuota,
    ExceptionFault,
    KillWorker,
    MemoryLimit,
    NetworkFault,
)
from reliability.chaos.hook import ChaosHook
from reliability.errors import ChaosError

pipe = Pipeline("where")
LIMITS = (resource.getrlimit(resource.RLIMIT_AS), resource.getrlimit(resource.RLIMIT_FSIZE))


@pipe.step
def use() -> int:
    return 1


def test_every_fault_type_declares_where_it_runs() -> None:
    declared = {name: cls.runs_in for name, cls in FAULT_TYPES.items()}
    assert declared == {"exception": "worker", "latency": "worker", "hang": "worker",
                        "kill_worker": "controller", "network": "worker", "data": "worker",
                        "disk_quota": "worker", "memory_limit": "worker"}
    assert NetworkFault(proxy="p", toxic="down", step="use").where == "worker"
    assert NetworkFault(proxy="p", toxic="down").where == "controller"  # the whole method


def test_the_hook_takes_only_worker_faults() -> None:
    hook = ChaosHook([KillWorker(name="k", step="use"), NetworkFault(name="m", proxy="p",
                                                                     toxic="down")])
    assert not hook.active
    hook.configure([ExceptionFault(name="e", step="use")])
    assert hook.active


@pytest.mark.parametrize("fault", [DiskQuota(name="d", step="use", bytes=10),
                                   MemoryLimit(name="m", step="use"),
                                   NetworkFault(name="n", step="use", proxy="p",
                                                toxic="down")])
def test_a_fault_that_changes_the_process_needs_the_attempt_scope(fault: object) -> None:
    hook = ChaosHook([fault])  # type: ignore[list-item]
    ctx = StepContext(pipeline="where", run_id="r", step="use", attempt=1, interval=None,
                      staging_dir=Path("."))
    with pytest.raises(ChaosError, match=r"undone when its attempt ends.*StepHook.attempt"):
        hook.before(ctx, pipe.steps["use"], {})
    assert ctx._emitted == []


@pytest.mark.parametrize("fault", [DiskQuota(name="d", step="use", bytes=10),
                                   MemoryLimit(name="m", step="use")])
def test_a_process_wide_limit_is_refused_while_another_attempt_runs_in_the_process(
        fault: object) -> None:
    hook = ChaosHook([fault])  # type: ignore[list-item]
    spec = pipe.steps["use"]
    first = StepContext(pipeline="where", run_id="r1", step="use", attempt=1, interval=None,
                        staging_dir=Path("."))
    second = StepContext(pipeline="where", run_id="r2", step="use", attempt=1,
                         interval=None, staging_dir=Path("."))
    with hook.attempt(first, spec), hook.attempt(second, spec):
        with pytest.raises(ChaosError, match=r"limits the whole worker process.*other steps"):
            hook.before(second, spec, {})
    errors: list[BaseException] = []

    def in_a_thread() -> None:
        try:
            with hook.attempt(first, spec):
                hook.before(first, spec, {})
        except ChaosError as exc:
            errors.append(exc)

    t = threading.Thread(target=in_a_thread)
    t.start()
    t.join()
    assert len(errors) == 1 and "runs attempts in threads" in str(errors[0])
    assert resource.getrlimit(resource.RLIMIT_AS) == LIMITS[0]
    assert resource.getrlimit(resource.RLIMIT_FSIZE) == LIMITS[1]
