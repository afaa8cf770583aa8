"""The local runner: supervised workers, retries, timeouts, atomic outputs, run ledger."""

from reliability.runner.core import Runner, RunResult, default_home, new_run_id
from reliability.runner.ledger import Ledger, RunRecord
from reliability.runner.store import ArtifactStore

__all__ = [
    "ArtifactStore", "Ledger", "RunRecord", "RunResult", "Runner", "default_home", "new_run_id",
]
