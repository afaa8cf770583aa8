"""The step hook that enforces contracts around every step, inside the worker.

``before`` checks each input against its input contract and the step's annotations;
``after`` checks the output before the runner commits it. A failure raises
:class:`~reliability.errors.ContractViolation` with the full report as data: the runner
fails the step without retry, quarantines the output and skips everything downstream.
Each passing check emits ``contract_checked`` (contract, direction, rows, seconds).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reliability.contracts.engine import Contract
from reliability.contracts.interface import Interface, interface_of
from reliability.contracts.loader import ContractSet
from reliability.pipeline import StepContext, StepHook, StepSpec

__all__ = ["ContractHook"]


class ContractHook(StepHook):
    """Enforce ``contract_set`` (and, unless ``interface=False``, annotations).

    ``detailed=False`` skips pandera's failure report (faster; for mutation testing).
    """

    name = "contracts"

    def __init__(self, contract_set: ContractSet | None = None, *, interface: bool = True,
                 params_model: type[Any] | None = None, detailed: bool = True) -> None:
        self.detailed = detailed
        self.contracts = contract_set or ContractSet()
        self.interface = interface
        self.params_model = params_model
        self._inputs: dict[str, dict[str, Contract]] = {}
        self._outputs: dict[str, Contract | None] = {}
        for c in self.contracts:
            if c.direction == "input":
                self._inputs.setdefault(c.step, {})[c.spec.input or ""] = c
            else:
                self._outputs[c.step] = c
        self._interfaces: dict[str, Interface] = {}
        self._probe_inputs: dict[str, Mapping[str, Any]] = {}

    def _iface(self, spec: StepSpec) -> Interface:
        found = self._interfaces.get(spec.name)
        if found is None:
            found = self._interfaces[spec.name] = interface_of(spec, self.params_model)
        return found

    def before(self, ctx: StepContext, spec: StepSpec, inputs: dict[str, Any]
               ) -> dict[str, Any]:
        if self.interface:
            self._iface(spec).check_inputs(inputs, ctx.params)
        for param, contract in self._inputs.get(spec.name, {}).items():
            if param in inputs:
                report = contract.enforce(inputs[param], detailed=self.detailed)
                ctx.emit("contract_checked", contract=contract.name, direction="input",
                         rows=report.rows, seconds=report.seconds)
        out = self._outputs.get(spec.name)
        if out is not None and out.spec.kind == "model":
            self._probe_inputs[spec.name] = inputs
        return inputs

    def after(self, ctx: StepContext, spec: StepSpec, output: Any) -> Any:
        if self.interface:
            self._iface(spec).check_output(output)
        contract = self._outputs.get(spec.name)
        if contract is not None:
            inputs = self._probe_inputs.pop(spec.name, None)
            report = contract.enforce(output, inputs=inputs, detailed=self.detailed)
            ctx.emit("contract_checked", contract=contract.name, direction="output",
                     rows=report.rows, seconds=report.seconds)
        return output
