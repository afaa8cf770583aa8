"""Classify the changes between two versions of a pipeline's contracts.

``breaking``: a consumer or downstream user can now be broken — column removed, dtype
changed or narrowed, nullable -> required, range or allowed set narrowed, uniqueness or
strictness added, a quality gate raised, a step input contract added.
``warning``: guarantees were weakened — range widened, required -> nullable, a contract
or check removed. ``info``: column added, descriptions changed.

Sides are files, folders, or git revisions such as ``HEAD~1:contracts/reference``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from reliability.contracts.engine import Contract
from reliability.contracts.loader import load_specs
from reliability.contracts.spec import ColumnSpec, ContractSpec, FrameSpec
from reliability.errors import ConfigError

__all__ = ["Change", "diff_contracts", "diff_specs", "load_side"]

Severity = Literal["breaking", "warning", "info"]
_ORDER = {"breaking": 0, "warning": 1, "info": 2}
_WIDER = {"int8": ["int16", "int32", "int64"], "int16": ["int32", "int64"], "int32": ["int64"],
          "uint8": ["uint16", "uint32", "uint64", "int16", "int32", "int64"],
          "uint16": ["uint32", "uint64", "int32", "int64"], "uint32": ["uint64", "int64"],
          "float32": ["float64"]}


@dataclass(frozen=True, slots=True)
class Change:
    severity: Severity
    contract: str
    where: str
    message: str


def load_side(ref: str) -> list[Contract]:
    """Contracts from a file, a folder or ``REV:path`` in the current git repository."""
    p = Path(ref)
    if p.is_dir():
        return load_specs(p)
    if p.is_file():
        return load_specs_file(p)
    if ":" in ref:
        return _from_git(ref)
    raise ConfigError(f"{ref!r} is neither a file, a folder nor a git REV:path",
                      fix="pass e.g. contracts/reference or HEAD~1:contracts/reference")


def load_specs_file(path: Path) -> list[Contract]:
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / path.name).write_bytes(path.read_bytes())
        found = load_specs(d)
    return [Contract(c.spec, file=str(path)) for c in found]


def _git(*args: str) -> str:
    exe = shutil.which("git")
    if exe is None:
        raise ConfigError("git is not installed, so REV:path cannot be read",
                          fix="install git, or diff two folders instead")
    try:
        out = subprocess.run([exe, *args], capture_output=True, text=True, check=True,
                             timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise ConfigError(f"git {' '.join(args)} failed: {detail.strip()}",
                          fix="run inside the repository and name an existing REV:path"
                          ) from None
    return out.stdout


def _from_git(ref: str) -> list[Contract]:
    kind = _git("cat-file", "-t", ref).strip()
    with tempfile.TemporaryDirectory() as d:
        if kind == "blob":
            names = [ref.rsplit("/", 1)[-1].rsplit(":", maxsplit=1)[-1]]
            (Path(d) / names[0]).write_text(_git("show", ref))
        else:
            for name in _git("ls-tree", "--name-only", ref).split():
                (Path(d) / name).write_text(_git("show", f"{ref.rstrip('/')}/{name}"))
        found = load_specs(d)
    return [Contract(c.spec, file=f"{ref}/{Path(c.file or '').name}") for c in found]


def diff_contracts(old: list[Contract], new: list[Contract]) -> list[Change]:
    before = {c.spec.key: c.spec for c in old}
    after = {c.spec.key: c.spec for c in new}
    out: list[Change] = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if a is None and b is not None:
            sev: Severity = "breaking" if b.direction == "input" else "info"
            what = "step input contract added" if b.direction == "input" else "contract added"
            out.append(Change(sev, b.name, "", what))
        elif b is None and a is not None:
            out.append(Change("warning", a.name, "", "contract removed (no longer guarded)"))
        elif a is not None and b is not None:
            out.extend(diff_specs(a, b))
    return sorted(out, key=lambda c: (_ORDER[c.severity], c.contract, c.where))


def diff_specs(a: ContractSpec, b: ContractSpec) -> list[Change]:
    name = b.name
    out: list[Change] = []

    def add(sev: Severity, where: str, msg: str) -> None:
        out.append(Change(sev, name, where, msg))

    if a.kind != b.kind:
        add("breaking", "kind", f"kind {a.kind} -> {b.kind}")
        return out
    if a.frame is not None and b.frame is not None:
        _diff_frames(a.frame, b.frame, add)
    old_gates = {g.metric: g for g in a.gates}
    for g in b.gates:
        o = old_gates.pop(g.metric, None)
        if o is None:
            add("breaking", f"gates.{g.metric}", "quality gate added")
            continue
        if _tighter(o.min, g.min, lower=True) or _tighter(o.max, g.max, lower=False):
            add("breaking", f"gates.{g.metric}", f"gate raised {_gate(o)} -> {_gate(g)}")
        elif (o.min, o.max) != (g.min, g.max):
            add("warning", f"gates.{g.metric}", f"gate relaxed {_gate(o)} -> {_gate(g)}")
    for metric in old_gates:
        add("warning", f"gates.{metric}", "quality gate removed")
    if a.validation != b.validation:
        add("warning", "validation", f"validation {a.validation} -> {b.validation}")
    if a.description != b.description:
        add("info", "description", "description changed")
    return out


def _gate(g: Any) -> str:
    return " ".join(f"{op}{v}" for op, v in ((">=", g.min), ("<=", g.max)) if v is not None)


def _tighter(old: float | None, new: float | None, *, lower: bool) -> bool:
    if new is None:
        return False
    if old is None:
        return True
    return new > old if lower else new < old


def _diff_frames(a: FrameSpec, b: FrameSpec, add: Any) -> None:
    for col in a.columns.keys() - b.columns.keys():
        add("breaking", f"columns.{col}", "column removed")
    for col in b.columns.keys() - a.columns.keys():
        if b.columns[col].required and a.strict is not True:
            add("breaking", f"columns.{col}", "required column added to a non-strict input")
        else:
            add("info", f"columns.{col}", "column added")
    for col in sorted(a.columns.keys() & b.columns.keys()):
        _diff_column(col, a.columns[col], b.columns[col], add)
    if a.strict is not True and b.strict is True:
        add("breaking", "strict", "strict enabled: unknown columns are now rejected")
    elif a.strict is True and b.strict is not True:
        add("warning", "strict", f"strict {a.strict} -> {b.strict}: unknown columns pass")
    if b.min_rows > a.min_rows:
        add("breaking", "min_rows", f"min_rows {a.min_rows} -> {b.min_rows}")
    elif b.min_rows < a.min_rows:
        add("warning", "min_rows", f"min_rows {a.min_rows} -> {b.min_rows}")
    if (a.unique or []) != (b.unique or []):
        sev = "breaking" if b.unique and not set(a.unique or []) <= set(b.unique) else "warning"
        add(sev, "unique", f"unique {a.unique} -> {b.unique}")


def _diff_column(col: str, a: ColumnSpec, b: ColumnSpec, add: Any) -> None:
    where = f"columns.{col}"
    if a.dtype != b.dtype:
        widened = b.dtype in _WIDER.get(a.dtype, [])
        add("warning" if widened else "breaking", f"{where}.dtype",
            f"type {'widened' if widened else 'narrowed or changed'} {a.dtype} -> {b.dtype}")
    if a.nullable and not b.nullable:
        add("breaking", f"{where}.nullable", "nullable -> required")
    elif b.nullable and not a.nullable:
        add("warning", f"{where}.nullable", "required -> nullable")
    _diff_values(where, a, b, add)
    for check in ("notin", "str_matches", "str_length", "equal_to"):
        va, vb = getattr(a, check), getattr(b, check)
        if va != vb:
            add("breaking" if vb is not None else "warning", f"{where}.{check}",
                f"{check} {va!r} -> {vb!r}")
    if a.required != b.required:
        add("breaking" if b.required else "warning", f"{where}.required",
            f"required {a.required} -> {b.required}")


def _diff_values(where: str, a: ColumnSpec, b: ColumnSpec, add: Any) -> None:
    ra, rb = a.value_range(), b.value_range()
    if ra != rb:
        if ra.contains(rb):
            add("breaking", f"{where}.range", f"range narrowed {ra.text()} -> {rb.text()}")
        elif rb.contains(ra):
            add("warning", f"{where}.range", f"range widened {ra.text()} -> {rb.text()}")
        else:
            add("breaking", f"{where}.range", f"range moved {ra.text()} -> {rb.text()}")
    if a.isin != b.isin:
        narrowed = b.isin is not None and (a.isin is None or not set(a.isin) <= set(b.isin))
        add("breaking" if narrowed else "warning", f"{where}.isin",
            f"allowed values {'narrowed' if narrowed else 'widened'} {a.isin} -> {b.isin}")
    if b.unique and not a.unique:
        add("breaking", f"{where}.unique", "uniqueness added")
    elif a.unique and not b.unique:
        add("warning", f"{where}.unique", "uniqueness removed")
