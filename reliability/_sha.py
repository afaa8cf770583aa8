"""SHA-256 that loads OpenSSL only for inputs worth it.

``hashlib`` starts by loading OpenSSL and listing every digest it provides: about 3 ms of
CPU, paid by every process that imports it -- a large part of what a host task process
that runs one step (KFP, Metaflow) spends beyond the step. Most of what such a process
hashes is small: a run key, a cache key, a step's JSON output. :func:`sha256` hashes with
CPython's built-in SHA-256 (about 200 MB/s) until its input passes :data:`SMALL` bytes,
then hands the bytes seen so far to OpenSSL's (over 1 GB/s) and goes on there. The digest
is the same either way.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SMALL", "sha256"]

SMALL = 1 << 20
"""Bytes hashed by the built-in SHA-256 before OpenSSL's takes over."""

def _find_builtin() -> Any:
    """CPython's own SHA-256 (hashlib's fallback when OpenSSL is missing), or None."""
    import importlib

    for name in ("_sha256", "_sha2"):  # its module up to Python 3.11, and from 3.12
        try:
            return importlib.import_module(name).sha256
        except (ImportError, AttributeError):
            continue
    return None  # pragma: no cover - a Python built without it


_builtin = _find_builtin()


def _openssl() -> Any:
    import hashlib

    return hashlib.sha256()


class sha256:
    """``hashlib.sha256``'s ``update``/``digest``/``hexdigest``, the same digests."""

    __slots__ = ("_h", "_kept", "_size")

    def __init__(self, data: bytes | bytearray | memoryview = b"") -> None:
        self._size = 0
        self._kept: list[bytes] | None
        if _builtin is None:  # pragma: no cover
            self._h, self._kept = _openssl(), None
        else:
            self._h, self._kept = _builtin(), []
        if data:
            self.update(data)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        kept = self._kept
        if kept is not None:
            self._size += memoryview(data).nbytes
            if self._size > SMALL:  # worth OpenSSL: it takes over with what came before
                fast = _openssl()
                for chunk in kept:
                    fast.update(chunk)
                self._h, self._kept = fast, None
            else:
                kept.append(bytes(data))  # a caller may reuse its buffer
        self._h.update(data)

    def digest(self) -> bytes:
        return self._h.digest()  # type: ignore[no-any-return]

    def hexdigest(self) -> str:
        return self._h.hexdigest()  # type: ignore[no-any-return]
