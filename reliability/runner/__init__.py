"""The local runner: supervised workers, retries, timeouts, atomic outputs, run ledger."""

from reliability.runner.core import RunResult, Runner, default_home
from reliability.runner.ledger import Ledger, RunRecord
from reliability.runner.store import ArtifactStore

__all__ = ["ArtifactStore", "Ledger", "RunRecord", "RunResult", "Runner", "default_home"]
