"""``record`` makes the classes ``@dataclass`` makes, without compiling code at import: the
same class body under both must construct, compare, hash, print, freeze, pickle, copy and
``replace`` alike, and refuse the same bad calls."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reliability import _record
from reliability._record import record

OPTIONS = [{"frozen": True, "slots": True}, {"slots": True}, {"frozen": True}, {},
           {"frozen": True, "slots": True, "eq": False}, {"repr": False}]


def _body() -> dict[str, Any]:
    def __post_init__(self: Any) -> None:
        object.__setattr__(self, "total", self.a + len(self.tags))

    return {
        "__annotations__": {"a": "int", "b": "str", "tags": "list[str]", "hidden": "int",
                            "total": "int"},
        "b": "x",
        "tags": field(default_factory=list),
        "hidden": field(default=0, compare=False, repr=False),
        "total": field(init=False, default=-1),
        "__post_init__": __post_init__,
        "__module__": __name__,
    }


def pair(**options: Any) -> tuple[type, type]:
    """The same class made by ``@dataclass`` and by ``record``, named alike."""
    made: list[type] = []
    deco: Any
    for deco in (dataclass(**options), record(**options)):
        cls = type("Sample", (), _body())
        cls.__qualname__ = "Sample"
        made.append(deco(cls))
    return made[0], made[1]


def _behaviour(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    try:
        one = cls(*args, **kwargs)
    except TypeError:
        return {"error": "TypeError"}
    two = cls(*args, **kwargs)
    other = dataclasses.replace(one, a=one.a + 1)
    out: dict[str, Any] = {
        "repr": repr(one) if vars(cls).get("__repr__") else "object",
        "eq": one == two, "ne": one != other, "eq_other_type": one == (one.a,),
        "fields": [(f.name, f.init, f.compare) for f in dataclasses.fields(one)],
        "asdict": dataclasses.asdict(one),
        "replace": dataclasses.asdict(other),
        "deepcopy": dataclasses.asdict(copy.deepcopy(one)),
        "signature": str(inspect.signature(cls)),
        "doc": cls.__doc__,
        "slots": getattr(cls, "__slots__", None),
        "match_args": getattr(cls, "__match_args__", None),
        "hashable": cls.__hash__ is not None,
    }
    if cls.__hash__ is not None and "__hash__" in vars(cls):
        try:
            out["hash_equal"] = hash(one) == hash(two)
        except TypeError:
            out["hash_equal"] = "TypeError"  # a list field: unhashable under both
    try:
        one.a = 99  # type: ignore[attr-defined]
        out["assign"] = one.a  # type: ignore[attr-defined]
    except dataclasses.FrozenInstanceError:
        out["assign"] = "frozen"
    try:
        one.not_a_field = 1  # type: ignore[attr-defined]
        out["new_attribute"] = "set"
    except (AttributeError, dataclasses.FrozenInstanceError, TypeError):
        # refused alike (Python 3.11's frozen slotted dataclass raises TypeError here, from
        # its super() call on the class it replaced; a record raises FrozenInstanceError)
        out["new_attribute"] = "refused"
    return out


@pytest.mark.parametrize("options", OPTIONS, ids=[str(o) for o in OPTIONS])
@given(a=st.integers(-5, 5), b=st.one_of(st.none(), st.text(max_size=3)),
       tags=st.one_of(st.none(), st.lists(st.text(max_size=2), max_size=2)),
       positional=st.integers(0, 3), extra=st.sampled_from([None, "a", "zz"]),
       hot=st.booleans())
def test_a_record_behaves_as_the_dataclass_of_the_same_body(
        options: dict[str, Any], a: int, b: str | None, tags: list[str] | None,
        positional: int, extra: str | None, hot: bool) -> None:
    """``hot``: after enough instances that the record's ``__init__`` is compiled."""
    values = [("a", a), ("b", b), ("tags", tags)]
    given_values = [(k, v) for k, v in values if v is not None or k == "a"]
    args = tuple(v for _, v in given_values[:positional])
    kwargs = dict(given_values[positional:])
    if extra is not None:
        kwargs[extra] = 0  # a duplicate of a positional field, or an unknown keyword
    reference, ours = pair(**options)
    if hot:
        for i in range(_record.HOT):
            ours(i)
        assert "<string>" in vars(ours)["__init__"].__code__.co_filename  # compiled by now
    assert _behaviour(ours, args, kwargs) == _behaviour(reference, args, kwargs)


def test_a_frozen_record_with_hashable_fields_hashes_as_the_dataclass_does() -> None:
    made: list[Any] = []
    deco: Any
    for deco in (dataclass(frozen=True, slots=True), record(frozen=True, slots=True)):
        @deco
        class Point:
            x: int
            y: tuple[int, ...] = ()
            note: str = field(default="", compare=False)

        made.append(Point)
    reference, ours = made
    for cls in made:
        assert hash(cls(1, (2,), "a")) == hash(cls(1, (2,), "b"))
        assert {cls(1), cls(1, note="x")} == {cls(1)}
    assert hash(ours(3, (4,))) == hash(reference(3, (4,)))  # the same fields, hashed alike


def test_a_method_the_class_writes_itself_is_kept() -> None:
    @record(frozen=True)
    class Named:
        name: str

        def __repr__(self) -> str:
            return f"<{self.name}>"

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Named) and other.name.lower() == self.name.lower()

        def __hash__(self) -> int:
            return hash(self.name.lower())

    assert repr(Named("A")) == "<A>"
    assert Named("A") == Named("a")
    assert hash(Named("A")) == hash(Named("a"))


def test_subclass_records_take_their_bases_fields_first() -> None:
    made: list[Any] = []
    deco: Any
    for deco in (dataclass(frozen=True), record(frozen=True)):
        @deco
        class Base:
            a: int
            b: int = 2

        @deco
        class Child(Base):
            c: int = 3

        made.append(Child)
    for cls in made:
        assert repr(cls(1, c=4)).endswith("Child(a=1, b=2, c=4)")
        assert [f.name for f in dataclasses.fields(cls)] == ["a", "b", "c"]
    assert str(inspect.signature(made[1])) == str(inspect.signature(made[0]))


@record(frozen=True, slots=True)
class FrozenSlotted:
    name: str
    sizes: tuple[int, ...] = ()


@record(slots=True)
class Slotted:
    name: str
    sizes: list[int] = field(default_factory=list)


@record(frozen=True)
class Frozen:
    name: str


@pytest.mark.parametrize("value", [FrozenSlotted("a", (1, 2)), Slotted("b", [3]), Frozen("c")],
                         ids=lambda v: type(v).__name__)
def test_records_survive_pickling_and_copies(value: Any) -> None:
    """Records cross process boundaries (tasks and results to workers, events to
    subscribers): a frozen slotted one must be rebuilt past its frozen ``__setattr__``."""
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):  # slots need protocol 2, as ever
        assert pickle.loads(pickle.dumps(value, protocol)) == value
    assert copy.copy(value) == value
    assert copy.deepcopy(value) == value


def test_each_instance_gets_its_own_default_from_a_factory() -> None:
    @record(slots=True)
    class Bag:
        items: list[int] = field(default_factory=list)

    one, two = Bag(), Bag()
    one.items.append(1)
    assert two.items == []


def test_a_body_with_its_own_eq_or_init_is_completed_as_the_dataclass_is() -> None:
    """Python gives a body that writes ``__eq__`` alone ``__hash__ = None``; ``@dataclass``
    still hashes a frozen one by its fields, and keeps a body's own ``__init__`` (and its
    signature)."""
    made: list[Any] = []
    deco: Any
    for deco in (dataclass(frozen=True), record(frozen=True)):
        @deco
        class Loose:  # noqa: PLW1641 (its hash is the point)
            x: int
            y: int = 0

            def __eq__(self, other: object) -> bool:
                return type(other) is type(self) and other.x == self.x  # type: ignore[attr-defined]

        @deco
        class Parsed:
            x: int

            def __init__(self, text: str) -> None:
                object.__setattr__(self, "x", int(text))

        made.append((Loose, Parsed))
    for loose, parsed in made:
        assert loose(1, 2) == loose(1, 3)
        assert loose.__hash__ is not None
        assert parsed("7").x == 7
    (ref_loose, ref_parsed), (our_loose, our_parsed) = made
    assert hash(our_loose(4, 5)) == hash(ref_loose(4, 5))
    assert str(inspect.signature(our_parsed)) == str(inspect.signature(ref_parsed))


def test_a_required_field_after_a_defaulted_one_is_refused_as_by_dataclass() -> None:
    body: dict[str, Any] = {"__annotations__": {"a": "int", "b": "int"}, "a": 1}
    for deco in (dataclass, record):
        with pytest.raises(TypeError, match="non-default argument 'b' follows default"):
            deco(type("Bad", (), dict(body)))
