from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
ROOT = TESTS.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees another's home, or the developer's."""
    monkeypatch.setenv("RELIABILITY_HOME", str(tmp_path / "home"))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"



@pytest.fixture(autouse=True, scope="session")
def _close_dask_clusters() -> Iterator[None]:
    """Dask clusters the runs of this session shared are closed before logging is torn down."""
    yield
    module = sys.modules.get("reliability.runner.dask_executor")
    if module is not None:
        module.close_clusters()
