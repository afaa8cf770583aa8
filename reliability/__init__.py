"""pipeline-reliability: make ML and data pipelines fail loudly, recover gracefully and
stay observable.

The distribution is ``pipeline-reliability``; the import name is ``reliability``.
This module is a thin facade: each name loads its module on first use, so importing the
package (as every task process of an orchestrator does) costs almost nothing, and heavy
dependencies (pandas, pandera, prometheus_client, jinja2, pydantic) are imported only when
the feature that needs them is used.
"""

from __future__ import annotations

import typing as _typing

from reliability._lazy import lazy_exports as _lazy_exports

if _typing.TYPE_CHECKING:
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

_WHERE = {
    **dict.fromkeys(["ConfigError", "ContractViolation", "CycleError", "DefinitionError",
                     "ReliabilityError", "RunCancelled", "RunError", "StepFailed"], "errors"),
    **dict.fromkeys(["Event", "EventBus", "EventKind"], "events"),
    **dict.fromkeys(["DataInterval", "Pipeline", "Retry", "StepContext", "StepHook"],
                    "pipeline"),
    **dict.fromkeys(["Ledger", "Runner", "RunResult"], "runner"),
}

__getattr__, __dir__ = _lazy_exports(__name__, _WHERE)
