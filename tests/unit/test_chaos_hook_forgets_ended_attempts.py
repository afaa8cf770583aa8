"""A worker runs attempt after attempt: the chaos hook keeps what it knows of an attempt
(when a step with a ``kill_worker`` fault began) only while that attempt runs, whether it
returned or raised."""

from __future__ import annotations

from pathlib import Path

import pytest

from reliability import Pipeline, StepContext
from reliability.chaos.faults import KillWorker
from reliability.chaos.hook import ChaosHook


def _attempt(hook: ChaosHook, pipe: Pipeline, n: int, tmp_path: Path, *, fail: bool) -> None:
    spec = pipe.steps["victim"]
    ctx = StepContext("p", "run-1", "victim", n, None, tmp_path / f"a{n}")
    with hook.attempt(ctx, spec):
        inputs = hook.before(ctx, spec, {})
        if fail:
            raise RuntimeError("the step failed")
        hook.after(ctx, spec, spec.fn(**inputs))


def test_attempts_that_raise_leave_nothing_behind(tmp_path: Path) -> None:
    pipe = Pipeline("p")
    pipe.add(lambda: 1, name="victim")
    # a kill an hour into the attempt: a returning attempt would be held for it, so only
    # raising attempts run here
    hook = ChaosHook([KillWorker(name="k", step="victim", after=3600)], holds_for_kills=True)
    for n in range(1, 51):
        with pytest.raises(RuntimeError):
            _attempt(hook, pipe, n, tmp_path, fail=True)
    assert hook._began == {}
    assert hook._open == {}
