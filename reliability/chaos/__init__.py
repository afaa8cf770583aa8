"""Chaos engineering for pipelines: fault injection against real network paths.

``ProxyServer`` is an embedded Toxiproxy-compatible server (see
:mod:`reliability.chaos.proxy`). It is imported lazily so ``import
reliability.chaos`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reliability._lazy import lazy_exports

if TYPE_CHECKING:
    from reliability.chaos.controller import Controller, inject
    from reliability.chaos.experiment import ExperimentSpec, load_experiment
    from reliability.chaos.explore import ExploreResult, explore
    from reliability.chaos.faults import (
        DataFault,
        DiskQuota,
        ExceptionFault,
        Hang,
        KillWorker,
        Latency,
        MemoryLimit,
        NetworkFault,
    )
    from reliability.chaos.hook import ChaosHook
    from reliability.chaos.journal import Journal
    from reliability.chaos.proxy import ProxyServer
    from reliability.chaos.runner import run_experiment

__all__ = [
    "ChaosHook",
    "Controller",
    "DataFault",
    "DiskQuota",
    "ExceptionFault",
    "ExperimentSpec",
    "ExploreResult",
    "Hang",
    "Journal",
    "KillWorker",
    "Latency",
    "MemoryLimit",
    "NetworkFault",
    "ProxyServer",
    "explore",
    "inject",
    "load_experiment",
    "run_experiment",
]

_HOME = {
    "ChaosHook": "hook", "Controller": "controller", "inject": "controller",
    "ExperimentSpec": "experiment", "load_experiment": "experiment",
    "ExploreResult": "explore", "explore": "explore", "Journal": "journal",
    "run_experiment": "runner", "DataFault": "faults", "DiskQuota": "faults",
    "ExceptionFault": "faults", "Hang": "faults", "KillWorker": "faults", "Latency": "faults",
    "MemoryLimit": "faults", "NetworkFault": "faults", "ProxyServer": "proxy",
}


__getattr__, __dir__ = lazy_exports(__name__, _HOME)
