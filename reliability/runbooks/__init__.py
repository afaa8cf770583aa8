"""Runbooks rendered from sandboxed Jinja templates with the evidence of a real failure.

    renderer = RunbookRenderer(template_dirs=["runbooks"], base_url="https://runbooks.example")
    renderer.write(Evidence(family="step_failed", pipeline="reference", run_id=run_id,
                            summary="train failed"), out_dir)

Built-in templates ship in ``reliability/runbooks/templates``; a project's ``runbooks/``
directory overrides them by file name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reliability._lazy import lazy_exports

if TYPE_CHECKING:
    from reliability.runbooks.evidence import FAMILIES, Evidence, LedgerView
    from reliability.runbooks.render import Runbook, RunbookRenderer

__all__ = ["FAMILIES", "Evidence", "LedgerView", "Runbook", "RunbookRenderer"]

_WHERE = {"FAMILIES": "evidence", "Evidence": "evidence", "LedgerView": "evidence",
          "Runbook": "render", "RunbookRenderer": "render"}


__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
