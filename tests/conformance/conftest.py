"""The executor conformance suite: every executor must pass these tests unchanged.

Add an executor by adding its name to ``EXECUTORS`` (it is built with
``reliability.runner.executor.make_executor``); an executor whose extra is not installed is
reported as an error in CI, never silently skipped there.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reliability import Pipeline, Runner

# every executor the package ships; its optional dependencies must be installed in CI
EXECUTORS = ["local"] + (
    ["dask"] if importlib.util.find_spec("reliability.runner.dask_executor") else [])


def _available(name: str) -> bool:
    if name == "dask":
        return importlib.util.find_spec("distributed") is not None
    return True


@pytest.fixture(params=EXECUTORS)
def executor_name(request: pytest.FixtureRequest) -> str:
    name = str(request.param)
    if not _available(name):
        if os.environ.get("CI"):
            pytest.fail(f"executor {name!r} is not installed in CI")
        pytest.skip(f"executor {name!r} is not installed here")
    return name


@pytest.fixture
def make_runner(executor_name: str) -> Iterator[Callable[..., Runner]]:
    """``make_runner(pipeline, home, **kw)``: a Runner on the executor under test."""
    made: list[Runner] = []

    def make(pipeline: Pipeline, home: Path, **kw: Any) -> Runner:
        runner = Runner(pipeline, home=home, executor=executor_name,
                        workers=kw.pop("workers", 2), **kw)
        made.append(runner)
        return runner

    yield make
    for r in made:
        r.close()
        r.ledger.close()
