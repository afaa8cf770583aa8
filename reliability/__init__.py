"""pipeline-reliability: make ML and data pipelines fail loudly, recover gracefully and
stay observable.

The distribution is ``pipeline-reliability``; the import name is ``reliability``.
This module is a thin facade; heavy dependencies (pandas, pandera, prometheus_client) are
imported only when the feature that needs them is used.
"""

from __future__ import annotations

from reliability.errors import (
    ConfigError,
    ContractViolation,
    CycleError,
    DefinitionError,
    ReliabilityError,
    RunCancelled,
    RunError,
    StepFailed,
)
from reliability.events import Event, EventBus, EventKind
from reliability.pipeline import DataInterval, Pipeline, Retry, StepContext, StepHook
from reliability.runner import Ledger, Runner, RunResult

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "ContractViolation",
    "CycleError",
    "DataInterval",
    "DefinitionError",
    "Event",
    "EventBus",
    "EventKind",
    "Ledger",
    "Pipeline",
    "ReliabilityError",
    "Retry",
    "RunCancelled",
    "RunError",
    "RunResult",
    "Runner",
    "StepContext",
    "StepFailed",
    "StepHook",
    "__version__",
]
