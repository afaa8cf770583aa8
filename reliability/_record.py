"""``record``: :func:`dataclasses.dataclass` without compiling code at import.

On Python 3.11 ``@dataclass`` writes the source of ``__init__``, ``__repr__``, ``__eq__``,
``__hash__`` and the frozen ``__setattr__`` of every class and compiles each with
``exec``: about 1 ms per frozen slotted class, paid again by every process that imports
the module, since compiled bytecode caches only the module's own code. A task process of
a host that starts one per task (KFP, Metaflow) imports a few dozen of these classes to
run one step, so that cost is a large part of its overhead.

``record`` takes the same options this project uses (``frozen``, ``slots``, ``eq``,
``repr``) and makes the same kind of class: a real dataclass (``dataclasses.fields``,
``replace``, ``asdict`` and pickling work alike) whose methods are shared functions driven
by the class's fields, built once per class without compiling anything. Only the
``__init__`` of a class made often (:data:`HOT` instances) is compiled, when it gets
there: the run loop makes thousands of events and tasks.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from operator import attrgetter
from typing import Any, TypeVar, dataclass_transform, overload

__all__ = ["record"]

T = TypeVar("T", bound=type)
_MISSING = dataclasses.MISSING
_set = object.__setattr__


@overload
def record(cls: T, /) -> T: ...
@overload
def record(*, frozen: bool = ..., slots: bool = ..., eq: bool = ...,
           repr: bool = ...) -> Callable[[T], T]: ...
@dataclass_transform(field_specifiers=(dataclasses.field, dataclasses.Field))
def record(cls: T | None = None, /, *, frozen: bool = False, slots: bool = False,
           eq: bool = True, repr: bool = True) -> T | Callable[[T], T]:
    """Like ``@dataclass(frozen=..., slots=..., eq=..., repr=...)``, with the same
    ``__init__`` (positional or keyword, defaults, ``default_factory``, ``init=False``
    fields, ``__post_init__``), ``repr``, equality, hashing and frozenness."""

    def wrap(c: T) -> T:
        undocumented = not c.__dict__.get("__doc__")
        if undocumented:  # else @dataclass writes one through inspect.signature, at import
            c.__doc__ = c.__name__
        made: Any = dataclasses.dataclass(c, init=False, repr=False, eq=False, slots=slots)
        _methods(made, frozen=frozen, eq=eq, repr=repr)
        if undocumented:
            made.__doc__ = _Doc()
        return made  # type: ignore[no-any-return]

    return wrap if cls is None else wrap(cls)


def _methods(cls: type, *, frozen: bool, eq: bool, repr: bool) -> None:
    fields = dataclasses.fields(cls)
    own = dict(cls.__dict__)  # what the class body wrote, before anything is added
    qual = cls.__qualname__
    # a body that writes __eq__ alone gets __hash__ = None from Python: not a hash of its own
    own_hash = "__hash__" in own and not (own["__hash__"] is None and "__eq__" in own)

    def put(name: str, fn: Any) -> bool:
        if name in own:  # a method the class writes itself wins, as with @dataclass
            return False
        setattr(cls, name, fn)
        return True

    if put("__init__", _init(cls, fields, qual, frozen)):
        cls.__signature__ = _Signature()  # type: ignore[attr-defined]
    if repr:
        shown = tuple(f.name for f in fields if f.repr)

        def __repr__(self: Any) -> str:
            body = ", ".join(f"{n}={getattr(self, n)!r}" for n in shown)
            return f"{type(self).__qualname__}({body})"

        put("__repr__", __repr__)
    if eq:
        key = _key(tuple(f.name for f in fields if f.compare))

        def __eq__(self: Any, other: object) -> bool:
            if other.__class__ is self.__class__:
                return bool(key(self) == key(other))
            return NotImplemented

        put("__eq__", __eq__)
        if not own_hash:
            if frozen:
                hashed = _key(tuple(f.name for f in fields
                                    if (f.compare if f.hash is None else f.hash)))

                def __hash__(self: Any) -> int:
                    return hash(hashed(self))

                cls.__hash__ = __hash__  # type: ignore[assignment]
            else:
                cls.__hash__ = None  # type: ignore[assignment]  # mutable and compared
    if frozen:
        _freeze(cls, tuple(f.name for f in fields))


def _key(names: tuple[str, ...]) -> Callable[[Any], Any]:
    """The compared values of an instance, as a tuple (also for one field or none)."""
    if not names:
        return lambda _self: ()
    if len(names) == 1:
        one = attrgetter(names[0])
        return lambda self: (one(self),)
    return attrgetter(*names)


HOT = 16
"""Instances of one class after which its ``__init__`` is compiled (see :func:`_init`)."""


def _init(cls: type, fields: tuple[dataclasses.Field[Any], ...], qual: str,
          frozen: bool) -> Any:
    """The class's ``__init__``: a shared one driven by its fields, which after :data:`HOT`
    instances compiles the class's own (as ``@dataclass`` writes it: 0.6 instead of 1.8 µs
    for a 12-field result) -- a class made in a loop pays for that once; one made a few
    times per process never does."""
    init = [f for f in fields if f.init]
    names = tuple(f.name for f in init)
    defaults = {f.name: f.default for f in fields if f.default is not _MISSING}
    factories = {f.name: f.default_factory for f in fields
                 if f.default_factory is not _MISSING}
    fixed = tuple(f.name for f in fields if not f.init
                  and (f.name in defaults or f.name in factories))
    optional = [f.name in defaults or f.name in factories for f in init]
    for i in range(1, len(init)):  # what @dataclass refuses, for the same reason
        if optional[i - 1] and not optional[i]:
            raise TypeError(f"non-default argument {names[i]!r} follows default argument")
    post = hasattr(cls, "__post_init__")
    n = len(names)
    made = 0

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        nonlocal made
        made += 1
        if made == HOT and cls.__dict__.get("__init__") is __init__:
            cls.__init__ = _compile_init(  # type: ignore[misc]
                init, defaults, factories, fixed, post, qual, frozen)
        if len(args) > n:
            raise TypeError(f"{qual}() takes {n} positional arguments but {len(args)} "
                            "were given")
        for name, value in zip(names, args, strict=False):
            _set(self, name, value)
        for name in names[len(args):]:
            if name in kwargs:
                value = kwargs.pop(name)
            elif name in defaults:
                value = defaults[name]
            elif name in factories:
                value = factories[name]()
            else:
                raise TypeError(f"{qual}() missing required argument: {name!r}")
            _set(self, name, value)
        if kwargs:
            name = next(iter(kwargs))
            what = "multiple values for" if name in names else "an unexpected keyword"
            raise TypeError(f"{qual}() got {what} argument {name!r}")
        for name in fixed:
            _set(self, name, defaults[name] if name in defaults else factories[name]())
        if post:
            self.__post_init__()

    __init__.__qualname__ = f"{qual}.__init__"
    return __init__


def _compile_init(init: list[dataclasses.Field[Any]], defaults: dict[str, Any],
                  factories: dict[str, Any], fixed: tuple[str, ...], post: bool, qual: str,
                  frozen: bool) -> Any:
    """The ``__init__`` of a record as Python source, compiled: parameters in field order,
    defaults bound, factories called for what the caller left out."""
    env: dict[str, Any] = {"__rec_set": _set, "__rec_missing": _MISSING}

    def assign(name: str, value: str) -> str:  # past a frozen class's __setattr__
        return f"__rec_set(self, {name!r}, {value})" if frozen else f"self.{name} = {value}"

    params, body = [], []
    for i, f in enumerate(init):
        if f.name in defaults:
            env[f"__rec_d{i}"] = defaults[f.name]
            params.append(f"{f.name}=__rec_d{i}")
        elif f.name in factories:
            env[f"__rec_f{i}"] = factories[f.name]
            params.append(f"{f.name}=__rec_missing")
            body.append(f"if {f.name} is __rec_missing: {f.name} = __rec_f{i}()")
        else:
            params.append(f.name)
        body.append(assign(f.name, f.name))
    for j, name in enumerate(fixed):
        if name in defaults:
            env[f"__rec_x{j}"] = defaults[name]
            body.append(assign(name, f"__rec_x{j}"))
        else:
            env[f"__rec_x{j}"] = factories[name]
            body.append(assign(name, f"__rec_x{j}()"))
    if post:
        body.append("self.__post_init__()")
    src = (f"def __init__(self, {', '.join(params)}):\n"
           + "".join(f"    {line}\n" for line in body or ["pass"]))
    exec(src, env)  # noqa: S102 (our own source, from the class's field names)
    fn = env["__init__"]
    fn.__qualname__ = f"{qual}.__init__"
    return fn


def _freeze(cls: type, order: tuple[str, ...]) -> None:
    names = frozenset(order)

    def __setattr__(self: Any, name: str, value: Any) -> None:
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
        _set(self, name, value)

    def __delattr__(self: Any, name: str) -> None:
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
        object.__delattr__(self, name)

    cls.__setattr__ = __setattr__  # type: ignore[method-assign,assignment]
    cls.__delattr__ = __delattr__  # type: ignore[method-assign,assignment]
    if "__slots__" in cls.__dict__:  # pickling sets slots through __setattr__ otherwise
        def __getstate__(self: Any) -> list[Any]:
            return [getattr(self, name) for name in order]

        def __setstate__(self: Any, state: list[Any]) -> None:
            for name, value in zip(order, state, strict=True):
                _set(self, name, value)

        cls.__getstate__ = __getstate__  # type: ignore[method-assign,assignment]
        cls.__setstate__ = __setstate__  # type: ignore[attr-defined]


class _Factory:
    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


class _Doc:
    """An undocumented record's ``__doc__``, as ``@dataclass`` writes it, made on first use."""

    def __get__(self, obj: object, owner: type) -> str:
        return owner.__name__ + str(inspect.signature(owner)).replace(" -> None", "")


class _Signature:
    """``inspect.signature(cls)`` as ``@dataclass`` gives it, made on first use."""

    def __get__(self, obj: object, owner: type) -> inspect.Signature:
        params = []
        for f in dataclasses.fields(owner):
            if not f.init:
                continue
            default: Any = inspect.Parameter.empty
            if f.default is not _MISSING:
                default = f.default
            elif f.default_factory is not _MISSING:
                default = _FACTORY
            params.append(inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                            default=default, annotation=f.type))
        return inspect.Signature(params, return_annotation=None)
