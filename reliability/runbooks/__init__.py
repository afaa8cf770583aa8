"""Runbooks rendered from sandboxed Jinja templates with the evidence of a real failure.

    renderer = RunbookRenderer(template_dirs=["runbooks"], base_url="https://runbooks.example")
    renderer.write(Evidence(family="step_failed", pipeline="reference", run_id=run_id,
                            summary="train failed"), out_dir)

Built-in templates ship in ``reliability/runbooks/templates``; a project's ``runbooks/``
directory overrides them by file name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reliability.runbooks.evidence import FAMILIES, Evidence, LedgerView
    from reliability.runbooks.render import Runbook, RunbookRenderer

__all__ = ["FAMILIES", "Evidence", "LedgerView", "Runbook", "RunbookRenderer"]

_WHERE = {"FAMILIES": "evidence", "Evidence": "evidence", "LedgerView": "evidence",
          "Runbook": "render", "RunbookRenderer": "render"}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'reliability.runbooks' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"reliability.runbooks.{module}"), name)


def __dir__() -> list[str]:
    return sorted(__all__)
