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
from pathlib import Path
from typing import Any, Literal

from reliability._record import record
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


@record(frozen=True, slots=True)
class Change:
    severity: Severity
    contract: str
    where: str
    message: str


def load_side(ref: str, other: str | None = None) -> list[Contract]:
    """Contracts from a file, a folder (and its pipeline subfolders), ``REV:path`` in the
    current git repository, or a bare revision (``HEAD~1``): then ``other``'s path at that
    revision. A side holding no contract is an error, never an empty diff."""
    p = Path(ref)
    if p.is_dir():
        found = _load_dir(p)
    elif p.is_file():
        found = load_specs_file(p)
    elif ":" in ref:
        found = _from_git(ref)
    elif _is_revision(ref):
        if other is None or _is_revision(other) or not Path(other).exists():
            raise ConfigError(f"{ref!r} is a git revision but names no path",
                              fix=f"write {ref}:contracts/<pipeline>, or pass a file or "
                                  "folder as the other side")
        found = _from_git(f"{ref}:./{_relative(Path(other))}")
    else:
        raise ConfigError(f"{ref!r} is neither a file, a folder nor a git REV:path",
                          fix="pass e.g. contracts/reference or HEAD~1:contracts/reference")
    if not found:
        raise ConfigError(f"no contract files in {ref!r}",
                          fix="point at a contract file or a folder of contract YAML files "
                              "(e.g. contracts/reference)")
    return found


def _load_dir(d: Path) -> list[Contract]:
    """Contract files in ``d`` and in its subfolders (``contracts/<pipeline>/``)."""
    found = load_specs(d)
    for sub in sorted(x for x in d.iterdir() if x.is_dir() and not x.name.startswith(".")):
        found.extend(_load_dir(sub))
    return found


def _relative(path: Path) -> str:
    import os

    return Path(os.path.relpath(path.resolve(), Path.cwd().resolve())).as_posix()


def _is_revision(ref: str) -> bool:
    if shutil.which("git") is None or ref.startswith("-"):
        return False
    try:
        _git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except ConfigError:
        return False
    return True


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
        root = Path(d)
        if kind == "blob":
            names = [ref.rsplit("/", 1)[-1].rsplit(":", maxsplit=1)[-1]]
            (root / names[0]).write_text(_git("show", ref))
        else:
            base = ref.rstrip("/")
            for name in _git("ls-tree", "-r", "--name-only", "-z", ref).split("\0"):
                if not name.endswith((".yaml", ".yml")):
                    continue
                dest = root / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_text(_git("show", f"{base}/{name}"))
        found = _load_dir(root) if kind != "blob" else load_specs(root)
        return [Contract(c.spec, file=f"{ref.rstrip('/')}/"
                         f"{Path(c.file or '').relative_to(root).as_posix()}") for c in found]


def _key(spec: ContractSpec) -> tuple[str, str, str, str]:
    return (spec.pipeline, *spec.key)


def diff_contracts(old: list[Contract], new: list[Contract]) -> list[Change]:
    before = {_key(c.spec): c.spec for c in old}
    after = {_key(c.spec): c.spec for c in new}
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
    if a.backend != b.backend:
        add("breaking" if b.backend != "any" else "warning", "backend",
            f"backend {a.backend} -> {b.backend}")
    if a.frame is not None and b.frame is not None:
        _diff_frames(a.frame, b.frame, add, is_input=b.direction == "input")
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
    _diff_rest(a, b, out, add)
    return out


def _diff_rest(a: ContractSpec, b: ContractSpec, out: list[Change], add: Any) -> None:
    """Every other difference, by key path, so a change is never reported as none."""
    covered = [c.where for c in out]
    old = a.model_dump(exclude_none=True)
    new = b.model_dump(exclude_none=True)
    for where, before, after in _leaf_changes(old, new, ""):
        key = _covering(where)
        if any(key == w or key.startswith(w + ".") or w.startswith(key + ".")
               for w in covered if w):
            continue
        if key.split(".")[0] in {"contract", "synthesize"} or key.rsplit(".", 1)[-1] in {
                "title", "description", "name", "version"}:
            add("info", key, f"{key} changed")
        else:
            add("warning", key, f"{key} {before!r} -> {after!r} (review: "
                "not classified)")


_RANGE_KEYS = {"in_range", "greater_than", "greater_than_or_equal_to", "less_than",
               "less_than_or_equal_to"}
_UNORDERED = {"isin", "notin", "methods", "unique", "columns"}


def _covering(where: str) -> str:
    """The ``where`` a classified change uses for the dumped key path ``where``."""
    parts = where.split(".")
    if parts[0] == "frame":  # the schema block's field name
        parts = parts[1:]
    if len(parts) >= 3 and parts[0] == "columns" and parts[2] in _RANGE_KEYS:
        parts = [*parts[:2], "range"]
    return ".".join(parts)


def _leaf_changes(a: Any, b: Any, where: str) -> list[tuple[str, Any, Any]]:
    if isinstance(a, list) and isinstance(b, list) and where.rsplit(".", 1)[-1] in _UNORDERED:
        try:
            if set(a) == set(b):
                return []
        except TypeError:
            pass
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[tuple[str, Any, Any]] = []
        for k in sorted(set(a) | set(b), key=str):
            path = f"{where}.{k}" if where else str(k)
            out.extend(_leaf_changes(a.get(k), b.get(k), path))
        return out
    return [] if a == b else [(where, a, b)]


def _gate(g: Any) -> str:
    return " ".join(f"{op}{v}" for op, v in ((">=", g.min), ("<=", g.max)) if v is not None)


def _tighter(old: float | None, new: float | None, *, lower: bool) -> bool:
    if new is None:
        return False
    if old is None:
        return True
    return new > old if lower else new < old


def _diff_frames(a: FrameSpec, b: FrameSpec, add: Any, *, is_input: bool) -> None:
    for col in sorted(a.columns.keys() - b.columns.keys()):
        add("breaking", f"columns.{col}", "column removed")
    for col in sorted(b.columns.keys() - a.columns.keys()):
        if b.columns[col].required and is_input:
            add("breaking", f"columns.{col}",
                "required column added to an input contract: producers must now provide it")
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
    if a.max_rows != b.max_rows:
        narrowed = b.max_rows is not None and (a.max_rows is None or b.max_rows < a.max_rows)
        add("breaking" if narrowed else "warning", "max_rows",
            f"max_rows {a.max_rows} -> {b.max_rows}")
    if a.ordered != b.ordered:
        add("breaking" if b.ordered else "warning", "ordered",
            f"ordered {a.ordered} -> {b.ordered}")
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
    if (None if a.isin is None else set(a.isin)) != (None if b.isin is None else set(b.isin)):
        narrowed = b.isin is not None and (a.isin is None or not set(a.isin) <= set(b.isin))
        add("breaking" if narrowed else "warning", f"{where}.isin",
            f"allowed values {'narrowed' if narrowed else 'widened'} {a.isin} -> {b.isin}")
    if b.unique and not a.unique:
        add("breaking", f"{where}.unique", "uniqueness added")
    elif a.unique and not b.unique:
        add("warning", f"{where}.unique", "uniqueness removed")
