"""Prove, before a run, that each producer's output contract satisfies its consumer's
input contract: columns present, dtypes equal, nullability, ranges and allowed sets
contained, uniqueness and strictness guaranteed. Annotations are compared too.

An edge where either side has no data contract is reported as unproven (the runtime
checks still guard it); a provable mismatch raises :class:`WiringError` before any step runs.
"""

from __future__ import annotations

from dataclasses import field
from typing import TYPE_CHECKING

from reliability._record import record
from reliability.contracts.interface import interface_of, type_name
from reliability.contracts.spec import ColumnSpec, ContractSpec, FrameSpec, MetricsSpec
from reliability.errors import WiringError

if TYPE_CHECKING:
    from reliability.contracts.loader import ContractSet
    from reliability.pipeline import Pipeline

__all__ = ["WiringReport", "check_wiring", "frame_mismatches"]


@record(slots=True)
class WiringReport:
    proven: list[tuple[str, str, str]] = field(default_factory=list)    # producer, consumer, param
    unproven: list[tuple[str, str, str]] = field(default_factory=list)


def check_wiring(pipeline: Pipeline, contract_set: ContractSet) -> WiringReport:
    """Walk the DAG; raise WiringError naming both steps and every mismatch."""
    pipeline.validate()
    report = WiringReport()
    problems: list[str] = []
    for consumer, spec in pipeline.steps.items():
        consumer_iface = interface_of(spec)
        inputs = contract_set.inputs(consumer)
        for param, producer in spec.inputs.items():
            edge = f"{producer} -> {consumer}({param})"
            want = consumer_iface.inputs.get(param)
            have = interface_of(pipeline.steps[producer]).output
            if want is not None and have is not None and not _subclass(have, want):
                problems.append(f"{edge}: {producer!r} returns {type_name(have)} but "
                                f"{consumer!r} takes {param}: {type_name(want)}")
            cin, cout = inputs.get(param), contract_set.output(producer)
            if cin is None or cout is None:
                report.unproven.append((producer, consumer, param))
                continue
            found = contract_mismatches(cout.spec, cin.spec)
            problems.extend(f"{edge}: {m} (output contract {cout.name!r} in {cout.file} vs "
                            f"input contract {cin.name!r} in {cin.file})" for m in found)
            if not found:
                report.proven.append((producer, consumer, param))
    if problems:
        raise WiringError(
            f"pipeline {pipeline.name!r} is wired to data its consumers reject; "
            f"{len(problems)} mismatch(es):\n  - " + "\n  - ".join(problems) +
            "\nFix: tighten the producer's output contract (and the step) or relax the "
            "consumer's input contract")
    return report


def _subclass(have: object, want: object) -> bool:
    hs = have if isinstance(have, tuple) else (have,)
    ws = want if isinstance(want, tuple) else (want,)
    return all(any(issubclass(h, w) for w in ws) for h in hs)  # type: ignore[arg-type]


def contract_mismatches(prod: ContractSpec, cons: ContractSpec) -> list[str]:
    if prod.kind != cons.kind:
        return [f"kind {prod.kind} is produced but kind {cons.kind} is expected"]
    if "any" not in (prod.backend, cons.backend) and prod.backend != cons.backend:
        return [f"backend {prod.backend} is produced but {cons.backend} is expected"]
    if prod.frame is not None and cons.frame is not None:
        return frame_mismatches(prod.frame, cons.frame)
    if prod.metrics is not None and cons.metrics is not None:
        return _metrics_mismatches(prod.metrics, cons.metrics)
    return []


def frame_mismatches(prod: FrameSpec, cons: FrameSpec) -> list[str]:
    out: list[str] = []
    for name, want in cons.columns.items():
        have = prod.columns.get(name)
        if have is None:
            if want.required:
                out.append(f"column {name!r} is required but not produced")
            continue
        out.extend(f"column {name!r}: {m}" for m in column_mismatches(have, want))
    if cons.strict is True:
        extra = sorted(set(prod.columns) - set(cons.columns))
        if extra:
            out.append(f"columns {extra} are produced but the consumer is strict")
        elif prod.strict is not True:
            out.append("the producer is not strict, so unknown columns may reach a strict "
                       "consumer")
    if cons.min_rows > prod.min_rows:
        out.append(f"min_rows {prod.min_rows} produced, {cons.min_rows} required")
    if cons.max_rows is not None and (prod.max_rows is None or prod.max_rows > cons.max_rows):
        out.append(f"max_rows {prod.max_rows} produced, at most {cons.max_rows} accepted")
    if cons.unique and not _unique_guaranteed(prod, cons.unique):
        out.append(f"rows unique on {cons.unique} are required but not guaranteed")
    return out


def _unique_guaranteed(prod: FrameSpec, keys: list[str]) -> bool:
    if prod.unique and set(prod.unique) <= set(keys):
        return True
    return any(prod.columns.get(k) is not None and prod.columns[k].unique for k in keys)


def dtype_satisfies(have: str, want: str) -> bool:
    """Whether every column of declared dtype ``have`` passes a check for ``want``:
    the same dtype, or a ``datetime``/``timedelta`` of any unit where ``want`` names none
    (``datetime64[ns]`` satisfies ``datetime``; a zoned one does not)."""
    if have == want:
        return True
    from reliability.contracts.dtypes import parse_dtype

    h, w = parse_dtype(have), parse_dtype(want)
    if h is None or w is None:
        return False
    if h.name == w.name:
        return True
    return (w.kind in ("datetime", "timedelta") and w.unit is None and h.kind == w.kind
            and h.tz is None)


def column_mismatches(have: ColumnSpec, want: ColumnSpec) -> list[str]:
    out: list[str] = []
    if not dtype_satisfies(str(have.dtype), str(want.dtype)):
        out.append(f"dtype {have.dtype} is produced, {want.dtype} is expected")
        return out
    if have.nullable and not want.nullable:
        out.append("nullable in the producer, required (not null) by the consumer")
    if not have.required and want.required:
        out.append("optional in the producer, required by the consumer")
    rw, rh = want.value_range(), have.value_range()
    if not rw.contains(rh):
        out.append(f"range {rh.text()} produced, {rw.text()} accepted")
    if want.isin is not None and (have.isin is None or not set(have.isin) <= set(want.isin)):
        out.append(f"values {have.isin if have.isin is not None else 'unrestricted'} "
                   f"produced, only {want.isin} accepted")
    if want.notin is not None:
        banned = set(want.notin)
        if not (banned <= set(have.notin or ()) or
                (have.isin is not None and not banned & set(have.isin))):
            out.append(f"values {sorted(banned, key=repr)} are not excluded by the producer")
    if want.unique and not have.unique:
        out.append("unique values required but not guaranteed")
    for check in ("str_matches", "str_length", "equal_to"):
        if getattr(want, check) is not None and getattr(have, check) != getattr(want, check):
            out.append(f"{check} {getattr(want, check)!r} required but not guaranteed")
    return out


def _metrics_mismatches(prod: MetricsSpec, cons: MetricsSpec) -> list[str]:
    out: list[str] = []
    for key, want in cons.fields.items():
        have = prod.fields.get(key)
        if have is None:
            out.append(f"metric {key!r} is required but not produced")
        elif have.type != want.type:
            out.append(f"metric {key!r}: type {have.type} produced, {want.type} expected")
        elif have.nullable and not want.nullable:
            out.append(f"metric {key!r}: nullable produced, required expected")
    return out
