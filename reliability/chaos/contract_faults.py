"""Data faults derived from contracts: corrupt a step's data so it breaks one contract rule.

A ``data`` fault with ``mutation: NAME`` picks the mutation of that name among those
:func:`reliability.contracts.derive_mutations` derives from the contract guarding the
step's output (``target: output``) or input (``target: input``). The contracts hook is
also what runs during experiments, so "contracts hold" is checked by the real thing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from reliability.errors import ConfigError
from reliability.pipeline import Pipeline, StepHook

__all__ = ["contract_hooks", "resolve_mutations"]


def _contract_set(contracts_dir: str | Path | None, pipeline: Pipeline) -> Any:
    from reliability.contracts import load_contracts

    if contracts_dir is None or not Path(contracts_dir).is_dir():
        return None
    return load_contracts(contracts_dir, pipeline)


def contract_hooks(contracts_dir: str | Path | None, pipeline: Pipeline) -> list[StepHook]:
    """``[ContractHook]`` for the pipeline's contracts under ``contracts_dir`` (or ``[]``)."""
    from reliability.contracts import ContractHook

    cs = _contract_set(contracts_dir, pipeline)
    if cs is None or not len(cs):
        return []
    return [ContractHook(cs, params_model=pipeline.params_model)]


def resolve_mutations(faults: Sequence[Any], contracts_dir: str | Path | None,
                      pipeline: Pipeline, *, file: str | None = None
                      ) -> dict[str, Callable[[Any], Any]]:
    """Map each ``mutation`` fault's name to the contract mutation it names.

    ``faults`` is the experiment's whole method (in order), so an error names the fault's
    index: ``method[i].mutation``. Faults without ``mutation`` are skipped."""
    from reliability.contracts import derive_mutations

    wanted = [(i, f) for i, f in enumerate(faults) if getattr(f, "mutation", None)]
    if not wanted:
        return {}
    cs = _contract_set(contracts_dir, pipeline)
    out: dict[str, Callable[[Any], Any]] = {}
    for i, f in wanted:
        contract = None
        if cs is not None:
            if f.target == "output":
                contract = cs.output(f.step)
            else:
                found = cs.inputs(f.step)
                contract = found.get(f.input) if f.input else next(iter(found.values()), None)
        where: list[str | int] = ["method", i, "mutation"]
        if contract is None:
            raise ConfigError(
                f"fault {f.name!r}: step {f.step!r} has no {f.target} contract to derive "
                f"mutation {f.mutation!r} from", file=file, path=where,
                fix=f"add a contract under {contracts_dir}, or use 'corruption:' instead")
        mutations = {m.name: m for m in derive_mutations(contract)}
        if f.mutation not in mutations:
            raise ConfigError(
                f"fault {f.name!r}: contract {contract.name!r} has no mutation "
                f"{f.mutation!r}", file=file, path=where,
                fix=f"use one of {sorted(mutations)}")
        out[f.name] = mutations[f.mutation].apply
    return out
