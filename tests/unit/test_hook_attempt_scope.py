"""StepHook.attempt wraps exactly one attempt: entered before inputs are read, exited after
the output is written, also when the attempt fails."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from reliability.pipeline import Pipeline, StepContext, StepHook, StepSpec
from reliability.runner.worker import Task, run_task

pipe = Pipeline("scope")


@pipe.step
def ok() -> int:
    return 1


@pipe.step
def boom() -> int:
    raise ValueError("body failed")


class Recorder(StepHook):
    def __init__(self, staging: Path, fail_on_exit: bool = False) -> None:
        self.log: list[str] = []
        self.staging = staging
        self.fail_on_exit = fail_on_exit

    def attempt(self, ctx: StepContext, spec: StepSpec) -> AbstractContextManager[None]:
        return self._scope(spec)

    @contextmanager
    def _scope(self, spec: StepSpec) -> Iterator[None]:
        self.log.append(f"enter {spec.name}")
        try:
            yield
        finally:
            self.log.append(f"exit {spec.name} written={self.staging.exists()}")
            if self.fail_on_exit:
                raise OSError("undo failed")

    def before(self, ctx: StepContext, spec: StepSpec, inputs: dict[str, Any]
               ) -> dict[str, Any]:
        self.log.append("before")
        return inputs

    def after(self, ctx: StepContext, spec: StepSpec, output: Any) -> Any:
        self.log.append("after")
        return output


def _task(tmp: Path, step: str) -> Task:
    return Task(run_id="r", step=step, attempt=1, inputs={}, params=None, interval=None,
                staging_file=str(tmp / "out"), quarantine_file=str(tmp / "q"),
                scratch_dir=str(tmp / "scratch"))


def test_scope_wraps_the_attempt_and_exits_after_the_output_is_written(tmp_path: Path
                                                                       ) -> None:
    hook = Recorder(tmp_path / "out")
    res = run_task(pipe, [hook], _task(tmp_path, "ok"))
    assert res.ok
    assert hook.log == ["enter ok", "before", "after", "exit ok written=True"]


def test_scope_exits_when_the_body_fails(tmp_path: Path) -> None:
    hook = Recorder(tmp_path / "out")
    res = run_task(pipe, [hook], _task(tmp_path, "boom"))
    assert not res.ok and res.error_type == "ValueError"
    assert hook.log == ["enter boom", "before", "exit boom written=False"]


def test_an_error_on_exit_fails_the_attempt_and_leaves_no_output(tmp_path: Path) -> None:
    hook = Recorder(tmp_path / "out", fail_on_exit=True)
    res = run_task(pipe, [hook], _task(tmp_path, "ok"))
    assert not res.ok and res.error_type == "OSError" and "undo failed" in str(res.error)
    assert not (tmp_path / "out").exists()
