"""pytest plugin for chaos tests: a marker, seeded fixtures, off by default.

Enable with ``-p reliability.chaos.pytest_plugin`` (or ``pytest_plugins = [...]`` in the
root ``conftest.py``). Tests marked ``@pytest.mark.chaos`` are skipped unless ``--chaos`` is
given or ``RELIABILITY_CHAOS=1`` is set; ``--chaos-seed`` (default 0) seeds every fault
schedule so a failure replays exactly.

    @pytest.mark.chaos
    def test_trainer_survives_a_kill(chaos_inject, tmp_path):
        runner = Runner(pipeline, home=tmp_path)
        base = runner.run()
        with chaos_inject(runner, KillWorker(step="train", after=0.2)):
            assert runner.run(resume=False).outputs == base.outputs

Fixtures: ``chaos_seed``, ``chaos_inject`` (context manager factory), ``chaos_proxy`` (an
embedded Toxiproxy-compatible server in its own process, driven with toxiproxy-python),
``chaos_experiment`` (run an experiment file, returns the journal).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

__all__ = ["ChaosProxy"]

_ENV = "RELIABILITY_CHAOS"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("reliability-chaos", "chaos tests (pipeline-reliability)")
    group.addoption("--chaos", action="store_true", default=False,
                    help="run tests marked @pytest.mark.chaos (also: RELIABILITY_CHAOS=1)")
    group.addoption("--chaos-seed", type=int, default=None,
                    help="seed for fault schedules (default: the marker's seed, else 0)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chaos(seed=None): a chaos test; skipped unless --chaos or "
        "RELIABILITY_CHAOS=1")


def _enabled(config: pytest.Config) -> bool:
    return bool(config.getoption("--chaos")) or os.environ.get(_ENV, "") in ("1", "true",
                                                                            "yes")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _enabled(config):
        return
    skip = pytest.mark.skip(reason=f"chaos test: enable with --chaos or {_ENV}=1")
    for item in items:
        if item.get_closest_marker("chaos") is not None:
            item.add_marker(skip)


def _given_seed(request: pytest.FixtureRequest) -> int | None:
    """``--chaos-seed``, else the marker's ``seed``, else None (nothing was asked for)."""
    opt = request.config.getoption("--chaos-seed")
    if opt is not None:
        return int(opt)
    marker = request.node.get_closest_marker("chaos")
    seed = marker.kwargs.get("seed") if marker is not None else None
    return None if seed is None else int(seed)


@pytest.fixture
def chaos_seed(request: pytest.FixtureRequest) -> int:
    """The seed of this test's fault schedules (``--chaos-seed``, the marker's, or 0)."""
    seed = _given_seed(request)
    return 0 if seed is None else seed


@pytest.fixture
def chaos_inject(chaos_seed: int) -> Callable[..., AbstractContextManager[Any]]:
    """``with chaos_inject(runner, *faults): ...`` — faults installed, rolled back after."""
    from reliability.chaos.controller import inject

    def factory(runner: Any, *faults: Any, **kw: Any) -> AbstractContextManager[Any]:
        kw.setdefault("seed", chaos_seed)
        return inject(runner, *faults, **kw)

    return factory


class ChaosProxy:
    """An embedded proxy server for a test, driven through the Toxiproxy API."""

    _serial = itertools.count(1)  # toxic names unique in the process, whatever the server

    def __init__(self, api_url: str) -> None:
        from reliability.chaos.leases import ProxyApi

        self.url = api_url
        self.api = ProxyApi(api_url)
        self._down: dict[str, int] = {}  # proxy -> open toxic("down") blocks

    def create(self, name: str, upstream: str) -> str:
        """Create proxy ``name`` in front of ``upstream``; return its listen host:port."""
        return self.api.create_proxy(name, upstream)

    @contextmanager
    def toxic(self, proxy: str, toxic: str, *, stream: str = "downstream",
              toxicity: float = 1.0, **attributes: int) -> Iterator[str]:
        """Add a toxic for the ``with`` block and yield its name, unique on this server, so
        blocks nest; leaving one removes its own toxic only. ``toxic="down"`` disables the
        proxy until the outermost ``down`` block on it ends."""
        name = f"test-{toxic}-{stream}-{next(ChaosProxy._serial)}"
        if toxic == "down":
            if not self._down.get(proxy):
                self.api.set_enabled(proxy, False)
            self._down[proxy] = self._down.get(proxy, 0) + 1
        else:
            self.api.add_toxic(proxy, name, toxic, stream=stream, toxicity=toxicity,
                               attributes=attributes)
        try:
            yield name
        finally:
            if toxic != "down":
                self.api.remove_toxic(proxy, name)
            else:
                self._down[proxy] -= 1
                if not self._down[proxy]:
                    del self._down[proxy]
                    self.api.set_enabled(proxy, True)


@pytest.fixture
def chaos_proxy() -> Iterator[ChaosProxy]:
    """A Toxiproxy-compatible server in its own process (so forked workers hold none of
    its sockets); every proxy and toxic is gone after the test."""
    from reliability.chaos.target import TargetProcess

    with TargetProcess({}, proxy=True) as target:
        assert target.api_url is not None
        yield ChaosProxy(target.api_url)


@pytest.fixture
def chaos_experiment(tmp_path: Path, request: pytest.FixtureRequest) -> Callable[..., Any]:
    """``chaos_experiment("chaos/x.yaml") -> Journal``, with its state under ``tmp_path``.

    The experiment's own ``seed`` is kept (so a saved or explored schedule replays exactly)
    unless ``--chaos-seed`` or the marker's ``seed`` overrides it.
    """
    from reliability.chaos.runner import run_experiment

    seed = _given_seed(request)

    def run(source: Any, **kw: Any) -> Any:
        kw.setdefault("home", tmp_path / "chaos-home")
        if seed is not None:
            kw.setdefault("seed", seed)
        return run_experiment(source, **kw)

    return run
