"""Interface contracts: a step's annotated input, output and parameter types, checked
at call time and compared across the DAG before a run.

Annotations are resolved once per step (``typing.get_type_hints``); unresolvable ones are
treated as ``Any``. ``Union``/``Optional`` and generic aliases (``dict[str, Any]``) are
checked by their origin class; the run's parameters are checked against the pipeline's
pydantic model.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any

from reliability._record import record
from reliability.errors import ContractViolation

if typing.TYPE_CHECKING:
    from reliability.pipeline import StepSpec

__all__ = ["Interface", "interface_of", "matches", "type_name"]

_SKIP = frozenset({"ctx"})


def _resolve(tp: Any) -> Any:  # noqa: PLR0911 - one return per annotation form
    """Normalise an annotation to a class, a tuple of classes, or None (= anything)."""
    if tp is Any or tp is object or isinstance(tp, str | typing.TypeVar | typing.ForwardRef):
        return None
    if tp is None or tp is type(None):
        return (type(None),)
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _resolve(typing.get_args(tp)[0])
    if origin is typing.Union or origin is types.UnionType:
        parts = [_resolve(a) for a in typing.get_args(tp)]
        if any(p is None for p in parts):
            return None
        return tuple(c for p in parts for c in (p if isinstance(p, tuple) else (p,)))
    if origin is not None:
        return origin if isinstance(origin, type) else None
    return tp if isinstance(tp, type) else None


def matches(value: Any, resolved: Any) -> bool:
    return resolved is None or isinstance(value, resolved)


def type_name(resolved: Any) -> str:
    if resolved is None:
        return "Any"
    if isinstance(resolved, tuple):
        return " | ".join(t.__name__ for t in resolved)
    return str(resolved.__name__)


@record(frozen=True, slots=True)
class Interface:
    """The resolved annotations of one step."""

    step: str
    inputs: Mapping[str, Any]
    output: Any
    params: Any

    def check_inputs(self, inputs: Mapping[str, Any], params: Any) -> None:
        failures = [
            _failure(self.step, param, self.inputs[param], value)
            for param, value in inputs.items()
            if self.inputs.get(param) is not None and not isinstance(value, self.inputs[param])
        ]
        if self.params is not None and params is not None and not isinstance(params,
                                                                              self.params):
            failures.append(_failure(self.step, "params", self.params, params))
        if failures:
            _raise(self.step, "input", failures)

    def check_output(self, output: Any) -> None:
        if self.output is not None and not isinstance(output, self.output):
            _raise(self.step, "output", [_failure(self.step, "return", self.output, output)])


def _failure(step: str, param: str, expected: Any, value: Any) -> dict[str, Any]:
    return {"contract": f"interface:{step}", "column": param,
            "check": f"type({type_name(expected)})", "failure_count": 1,
            "failure_cases": [type(value).__name__]}


def _raise(step: str, direction: str, failures: list[dict[str, Any]]) -> None:
    what = ", ".join(f"{f['column']} is {f['failure_cases'][0]}, annotated "
                     f"{f['check'][5:-1]}" for f in failures)
    raise ContractViolation(
        f"step {step!r} {direction} does not match its annotations: {what}. Fix: return/pass "
        "the annotated type, or correct the annotation",
        contract=f"interface:{step}", step=step, direction=direction, failures=failures)


def interface_of(spec: StepSpec, params_model: type[Any] | None = None) -> Interface:
    """Resolve ``spec``'s annotations (unresolvable ones count as Any)."""
    try:
        hints = typing.get_type_hints(spec.fn, include_extras=True)
    except Exception:
        hints = {}
    inputs = {p: _resolve(hints[p]) for p in spec.inputs if p in hints}
    output = _resolve(hints["return"]) if "return" in hints else None
    params = _resolve(hints["params"]) if "params" in hints else None
    if params is None and params_model is not None and spec.wants_params:
        params = params_model
    return Interface(spec.name, {k: v for k, v in inputs.items() if v is not None}, output,
                     params)
