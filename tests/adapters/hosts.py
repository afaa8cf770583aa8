"""Adapter tests run against the real orchestrator, each in its own venv (``nox -s airflow``).

Where the orchestrator is not importable they are skipped -- except in CI (``CI=true``),
where a missing orchestrator fails the run: the adapter sessions must never pass by
skipping. (The main suite in CI leaves this directory to those sessions.)
"""

from __future__ import annotations

import importlib.util
import os

import pytest


def require_host(module: str) -> None:
    """Skip the calling test module unless ``module`` imports; fail instead in CI."""
    if importlib.util.find_spec(module) is not None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{module} is not installed, and CI requires the adapter tests to run. "
                    f"Fix: run them in their venv: nox -s {module}", pytrace=False)
    pytest.skip(f"{module} is not installed (nox -s {module} runs these tests in its venv)",
                allow_module_level=True)
