"""Loading YAML specs safely into typed pydantic models, with errors a person can act on.

Every YAML file the toolkit reads (contracts, chaos experiments, SLAs, schedules) goes
through :func:`load_yaml` and :func:`parse_model`, so a bad file always yields one
:class:`~reliability.errors.ConfigError` naming the file, the key path and the fix.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from reliability.errors import ConfigError

__all__ = ["Spec", "load_model", "load_yaml", "parse_model"]

M = TypeVar("M", bound=BaseModel)


class Spec(BaseModel):
    """Base for every declarative spec: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file with the safe loader; a missing or malformed file is a ConfigError."""
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(p),
                          fix="check the path, or create the file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read file ({exc.__class__.__name__})", file=str(p),
                          fix="point at a readable UTF-8 YAML file") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown place"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"malformed YAML at {where}: {problem}", file=str(p),
                          fix="correct the YAML syntax there (indentation, quotes, colons)"
                          ) from None


def _fix_for(err: Any, model: type[BaseModel]) -> str:
    kind = err.get("type", "")
    loc = err.get("loc", ())
    if kind == "extra_forbidden":
        known = _known_keys(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"{hint}remove the key; allowed keys here: {', '.join(sorted(known))}"
    if kind == "missing":
        return "add this required key"
    if kind.startswith("literal_error") or kind == "enum":
        expected = err.get("ctx", {}).get("expected")
        return f"use one of {expected}" if expected else "use one of the allowed values"
    if kind.endswith(("_type", "_parsing")):
        return f"give a value of the right type ({kind.replace('_', ' ')})"
    return "correct the value"


def _known_keys(model: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    current: Any = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        fields = getattr(current, "model_fields", {})
        field = fields.get(part) or next(
            (f for f in fields.values() if f.alias == part), None)
        if field is None:
            return []
        current = _model_of(field.annotation)
    fields = getattr(current, "model_fields", {})
    return [f.alias or name for name, f in fields.items()]


def _model_of(annotation: Any) -> Any:
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def parse_model(data: Any, model: type[M], *, file: str | None = None,
                path: Sequence[str | int] = ()) -> M:
    """Validate ``data`` into ``model``; the first error becomes a ConfigError."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = sorted(exc.errors(), key=lambda e: e.get("type") != "extra_forbidden")
        err = errors[0]
        loc = [*path, *(p for p in err["loc"] if not _is_union_tag(p))]
        msg = err["msg"].removeprefix("Value error, ")
        alternatives = [e for e in errors[1:] if _same_place(e, err)]
        if alternatives:  # one value, several accepted types: name them all
            msg = " or ".join(dict.fromkeys(
                [msg, *(e["msg"].removeprefix("Value error, ") for e in alternatives)]))
            errors = [e for e in errors if e is err or e not in alternatives]
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        if err.get("type") == "extra_forbidden":
            msg = "unknown key"
        raise ConfigError(msg + more, file=file, path=loc, fix=_fix_for(err, model)) from None


def _is_union_tag(part: Any) -> bool:
    """pydantic names the member of a union in the error location (``list[int]``)."""
    text = str(part)
    return isinstance(part, str) and (text.startswith(("function-", "constrained-"))
                                      or "[" in text or text in _TYPE_TAGS)


_TYPE_TAGS = frozenset({"int", "float", "str", "bool", "none", "bytes", "decimal"})


def _same_place(a: Any, b: Any) -> bool:
    strip = [p for p in a["loc"] if not _is_union_tag(p)]
    return a["loc"] != b["loc"] and strip == [p for p in b["loc"] if not _is_union_tag(p)]


def load_model(path: str | Path, model: type[M]) -> M:
    """Load a YAML file and validate it into ``model``."""
    data = load_yaml(path)
    if data is None:
        raise ConfigError("file is empty", file=str(path), fix="add the spec's keys")
    return parse_model(data, model, file=str(path))
