"""Loading YAML specs safely into typed pydantic models, with errors a person can act on.

Every YAML file the toolkit reads (contracts, chaos experiments, SLAs, schedules) goes
through :func:`load_yaml` and :func:`parse_model`, so a bad file always yields one
:class:`~reliability.errors.ConfigError` naming the file, the key path and the fix.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from reliability.errors import ConfigError, shorten

__all__ = ["Spec", "cut", "load_model", "load_yaml", "parse_model", "parse_yaml",
           "read_text"]

M = TypeVar("M", bound=BaseModel)


class Spec(BaseModel):
    """Base for every declarative spec: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


#: Bounds on what a spec file may hold: bigger, deeper or alias-inflated documents are
#: refused before they can exhaust memory, the stack or the time of the command reading them.
MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 100_000


def cut(value: Any, limit: int = 160) -> str:
    """Text of ``value`` (``repr`` unless a string) for a message, about ``limit`` long."""
    return shorten(value if isinstance(value, str) else repr(value), limit)


def read_text(path: str | Path, *, what: str = "file",
              fix: str = "point at a readable UTF-8 YAML file") -> str:
    """The text of a spec file; unreadable, non-regular or oversized files are ConfigErrors."""
    import os
    import stat

    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        if os.path.islink(p):
            raise ConfigError(f"{what} is a dangling symbolic link", file=str(p),
                              fix="point the link at an existing file") from None
        raise ConfigError(f"{what} not found (cannot read it)", file=str(p),
                          fix="check the path, or create the file") from None
    except OSError as exc:  # a symlink loop, a name too long, no permission on a folder
        raise ConfigError(f"cannot read the {what} ({exc.strerror or exc.__class__.__name__})",
                          file=str(p), fix=fix) from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise ConfigError(f"{what} is {kind}", file=str(p), fix=fix)
    try:
        with open(p, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} ({exc.strerror or exc.__class__.__name__})",
                          file=str(p), fix=fix) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{what} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB",
                          file=str(p), fix="split it, or remove what it does not need")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read the {what}: not UTF-8 text (byte {exc.start})",
                          file=str(p), fix=fix) from None


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file with the safe loader; a missing or malformed file is a ConfigError.

    Nesting deeper than :data:`MAX_DEPTH`, more than :data:`MAX_NODES` values once aliases
    are expanded, files over :data:`MAX_FILE_BYTES` and duplicate keys are refused.
    """
    return parse_yaml(read_text(path), file=str(path))


def parse_yaml(text: str, *, file: str | None = None) -> Any:
    """YAML text -> data under the same rules as :func:`load_yaml`."""
    import yaml

    if len(text) > MAX_FILE_BYTES:
        raise ConfigError(f"the document is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB",
                          file=file, fix="split it, or remove what it does not need")
    loader = None
    try:
        loader = _bounded_loader()(text)  # reads the stream: refuses control characters
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown place"
        problem = cut(getattr(exc, "problem", None) or str(exc).splitlines()[0], 300)
        fix = getattr(exc, "fix", None)
        if fix is not None:  # well-formed YAML this loader refuses
            raise ConfigError(f"at {where}: {problem}", file=file, fix=fix) from None
        raise ConfigError(f"malformed YAML at {where}: {problem}", file=file,
                          fix="correct the YAML syntax there (indentation, quotes, colons)"
                          ) from None
    except (ValueError, OverflowError, TypeError) as exc:  # e.g. a timestamp 2026-13-40
        raise ConfigError(f"a value cannot be read ({cut(str(exc))})", file=file,
                          fix="quote the value to keep it as text, or correct it") from None
    finally:
        if loader is not None:
            loader.dispose()


@functools.cache
def _bounded_loader() -> Any:
    """A SafeLoader that bounds depth and alias expansion and refuses duplicate keys."""
    import yaml
    from yaml.nodes import MappingNode, SequenceNode

    class Refused(yaml.MarkedYAMLError):
        def __init__(self, problem: str, mark: Any, fix: str) -> None:
            super().__init__(problem=problem, problem_mark=mark)
            self.fix = fix

    from yaml.composer import Composer
    from yaml.constructor import SafeConstructor
    from yaml.resolver import Resolver

    # libyaml (when PyYAML has it) scans and parses; composing stays in Python, bounded
    parser: Any = getattr(yaml.cyaml, "CParser", None) if yaml.__with_libyaml__ else None
    if parser is None:
        from yaml.parser import Parser
        from yaml.reader import Reader
        from yaml.scanner import Scanner

        class PyParser(Reader, Scanner, Parser):
            def __init__(self, stream: str) -> None:
                Reader.__init__(self, stream)
                Scanner.__init__(self)
                Parser.__init__(self)

        parser = PyParser

    class BoundedLoader(Composer, SafeConstructor, Resolver, parser):  # type: ignore[misc]
        def __init__(self, stream: str) -> None:
            parser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            self._depth = 0
            self._nodes = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            self._depth += 1
            self._nodes += 1
            try:
                if self._nodes > MAX_NODES:
                    raise Refused(f"the document has more than {MAX_NODES} values",
                                  self.peek_event().start_mark,  # type: ignore[no-untyped-call]
                                  "split it: a spec needs far fewer")
                if self._depth > MAX_DEPTH:
                    raise Refused(f"nesting is deeper than {MAX_DEPTH} levels",
                                  self.peek_event().start_mark,  # type: ignore[no-untyped-call]
                                  "flatten the structure; specs need only a few levels")
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

        def compose_document(self) -> Any:
            node = super().compose_document()
            _check_size(node)
            return node

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if isinstance(node, MappingNode):
                seen: dict[Any, Any] = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    try:
                        key = self.construct_object(key_node, deep=True)
                        hash(key)
                    except (TypeError, yaml.YAMLError, ValueError, OverflowError):
                        continue  # the base class reports it
                    first = seen.setdefault(key, key_node.start_mark)
                    if first is not key_node.start_mark:
                        raise Refused(
                            f"key {cut(str(key), 60)!r} appears twice (lines "
                            f"{first.line + 1} and {key_node.start_mark.line + 1}); "
                            "YAML would silently keep only the last",
                            key_node.start_mark, "keep one of them (merge their values)")
            return super().construct_mapping(node, deep=deep)

    def _check_size(root: Any) -> None:
        """Expanded size of the node graph (aliases counted each time they are used),
        iteratively; an alias inside its own anchor is refused too."""
        sizes: dict[int, int] = {}
        open_: set[int] = set()
        stack: list[tuple[Any, bool]] = [(root, False)]
        while stack:
            node, done = stack.pop()
            kids = (list(node.value) if isinstance(node, SequenceNode) else
                    [n for pair in node.value for n in pair]
                    if isinstance(node, MappingNode) else [])
            if done:
                open_.discard(id(node))
                sizes[id(node)] = 1 + sum(sizes[id(k)] for k in kids)
                if sizes[id(node)] > MAX_NODES:
                    raise Refused(f"the document expands to more than {MAX_NODES} values "
                                  "(aliases repeat what they point at)", node.start_mark,
                                  "write the values out instead of nesting aliases")
                continue
            if id(node) in sizes:
                continue
            if any(id(k) in open_ for k in kids) or id(node) in open_:
                raise Refused("an alias refers to the value that contains it, which never "
                              "ends", node.start_mark, "remove the alias")
            open_.add(id(node))
            stack.append((node, True))
            stack.extend((k, False) for k in kids if id(k) not in sizes)

    return BoundedLoader


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
