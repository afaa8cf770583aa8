"""Data and interface contracts around every step.

    contracts = load_contracts("contracts", pipeline)     # YAML under contracts/<pipeline>/
    check_wiring(pipeline, contracts)                      # before the run: WiringError
    Runner(pipeline, hooks=[ContractHook(contracts)])      # inputs and outputs checked

This package is a light facade: its names are imported on first use, so importing it
costs nothing until a contract is loaded (pandas, polars and pandera load lazily too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reliability._lazy import lazy_exports

if TYPE_CHECKING:
    from reliability.contracts.engine import Contract, Report
    from reliability.contracts.hook import ContractHook
    from reliability.contracts.loader import ContractSet, load_contracts
    from reliability.contracts.mutations import Mutation, derive_mutations
    from reliability.contracts.wiring import WiringReport, check_wiring

__all__ = [
    "Contract",
    "ContractHook",
    "ContractSet",
    "Mutation",
    "Report",
    "WiringReport",
    "check_wiring",
    "derive_mutations",
    "load_contracts",
]

_HOME = {
    "Contract": "engine", "Report": "engine", "ContractHook": "hook",
    "ContractSet": "loader", "load_contracts": "loader", "Mutation": "mutations",
    "derive_mutations": "mutations", "WiringReport": "wiring", "check_wiring": "wiring",
}


__getattr__, __dir__ = lazy_exports(__name__, _HOME)
