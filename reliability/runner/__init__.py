"""The local runner: supervised workers, retries, timeouts, atomic outputs, run ledger.

Names load on first use, so a process that needs only the ledger or the store (an
orchestrator's task process) does not import the run loop and its worker pool.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reliability._lazy import lazy_exports

if TYPE_CHECKING:
    from reliability.runner.core import Runner, RunResult, default_home, new_run_id
    from reliability.runner.ledger import Ledger, RunRecord
    from reliability.runner.store import ArtifactStore

__all__ = [
    "ArtifactStore", "Ledger", "RunRecord", "RunResult", "Runner", "default_home", "new_run_id",
]

_HOME = {
    "Runner": "core", "RunResult": "core", "default_home": "core", "new_run_id": "core",
    "Ledger": "ledger", "RunRecord": "ledger", "ArtifactStore": "store",
}

__getattr__, __dir__ = lazy_exports(__name__, _HOME)
