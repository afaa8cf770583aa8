"""Request bodies decoded the way Toxiproxy's Go ``encoding/json`` decoder reads them.

- :func:`decode` reads the first JSON value and ignores what follows it; an empty body is
  ``EOF``; ``NaN``/``Infinity`` are not JSON; invalid UTF-8 becomes U+FFFD; nesting beyond
  what the parser can hold is ``exceeded max depth`` (never a RecursionError).
- :class:`Fields` looks keys up as Go does: exact or case-insensitive, the last match wins.
- The typed getters return ``None`` for an absent or ``null`` field (Go leaves the field
  alone) and raise :class:`~.errors.ApiError` 400 with Go's wording for a wrong type.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from typing import Any

from reliability.chaos.proxy.errors import ApiError, bad_request

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "Fields",
    "decode",
    "float32",
    "go_kind",
    "type_error",
]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
FLOAT32_MAX = 3.4028234663852886e38
_SHOWN = 40  # characters of an offending number quoted in an error


def _no_constants(name: str) -> Any:
    raise ValueError(f"invalid character {name[0]!r} looking for beginning of value")


_DECODER = json.JSONDecoder(parse_constant=_no_constants)
_WHITESPACE = " \t\n\r"


def decode(body: bytes) -> Any:
    """The first JSON value of ``body``; raise ApiError(400) like Toxiproxy's decoder."""
    text = body.decode("utf-8", errors="replace")
    start = len(text) - len(text.lstrip(_WHITESPACE))
    if start == len(text):
        raise bad_request("EOF")
    try:
        value, _end = _DECODER.raw_decode(text, start)
    except RecursionError:
        raise bad_request("exceeded max depth") from None
    except ValueError as exc:  # JSONDecodeError, and too many digits for an int
        raise bad_request(str(exc)) from None
    return value


def go_kind(value: object) -> str:
    """The JSON kind Go names in its type errors."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _number_text(value: int | float) -> str:
    text = str(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def type_error(value: object, where: str, go_type: str, *, literal: bool = False) -> ApiError:
    """Go's ``json: cannot unmarshal KIND into Go struct field WHERE of type T`` (400)."""
    kind = go_kind(value)
    if literal and isinstance(value, int | float) and not isinstance(value, bool):
        kind = f"number {_number_text(value)}"
    target = f"Go struct field {where}" if where else "Go value"
    return bad_request(f"json: cannot unmarshal {kind} into {target} of type {go_type}")


def float32(value: float) -> float | int:
    """``value`` rounded to float32 and written as Go prints it (``1`` for 1.0, ``0.1``)."""
    rounded = struct.unpack("<f", struct.pack("<f", value))[0]
    if rounded.is_integer():
        return int(rounded)
    for digits in range(1, 10):
        shortest = float(f"{rounded:.{digits}g}")
        if struct.unpack("<f", struct.pack("<f", shortest))[0] == rounded:
            return shortest
    return float(rounded)


class Fields:
    """The fields of one decoded JSON object, matched by name as Go's decoder does."""

    def __init__(self, obj: Mapping[str, Any], struct: str) -> None:
        self._obj = obj
        self.struct = struct

    def raw(self, name: str) -> Any:
        """The value of ``name`` (exact or case-insensitive key; the last match wins)."""
        found: Any = None
        for key, value in self._obj.items():
            if key == name or key.casefold() == name:
                found = value
        return found

    def _where(self, name: str) -> str:
        return f"{self.struct}.{name}"

    def string(self, name: str) -> str | None:
        value = self.raw(name)
        if value is None or isinstance(value, str):
            return value
        raise type_error(value, self._where(name), "string")

    def boolean(self, name: str) -> bool | None:
        value = self.raw(name)
        if value is None or isinstance(value, bool):
            return value
        raise type_error(value, self._where(name), "bool")

    def int64(self, name: str, go_type: str = "int64") -> int | None:
        """A 64-bit integer (``go_type`` is the field's Go type, for the error text)."""
        value = self.raw(name)
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            if INT64_MIN <= value <= INT64_MAX:
                return value
            raise type_error(value, self._where(name), go_type, literal=True)
        if isinstance(value, float):  # Go parses an integer field with ParseInt: 1.0 fails
            raise type_error(value, self._where(name), go_type, literal=True)
        raise type_error(value, self._where(name), go_type)

    def toxicity(self, name: str) -> float | int | None:
        """A float32 in [0, 1]: Go refuses what float32 cannot hold; we also refuse < 0, > 1."""
        value = self.raw(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise type_error(value, self._where(name), "float32")
        if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
            raise type_error(value, self._where(name), "float32", literal=True)
        if not 0 <= value <= 1:
            raise bad_request(f"toxicity {_number_text(value)} is not between 0 and 1")
        return float32(value)

    def object(self, name: str, go_type: str) -> Mapping[str, Any] | None:
        value = self.raw(name)
        if value is None or isinstance(value, dict):
            return value
        raise type_error(value, self._where(name), go_type)
