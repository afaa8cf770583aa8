"""Content-addressed artifact store on local disk, with atomic commits.

A step's output is serialized by its worker into ``staging/<run>/<step>.<attempt>``; the
runner commits it with one ``os.replace`` into ``objects/<h[:2]>/<h>``. An object exists
completely or not at all, and committing the same content twice is a no-op, so retried,
timed-out, killed and resumed attempts never leave a partial or duplicate committed output.
Outputs that broke a contract go to ``quarantine/`` for inspection and are never committed.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import pickle
import shutil
import time
from pathlib import Path
from typing import Any, BinaryIO

from reliability.errors import ConfigError

__all__ = ["ArtifactStore", "Codec", "decode", "encode"]

Codec = str  # "json" | "bytes" | "file" | "pickle"
_CHUNK = 1 << 20


class _HashingWriter(io.RawIOBase):
    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.sha.update(b)
        self.size += len(b)
        return self.fh.write(b)


def _json_safe(value: Any) -> bool:
    """True if json round-trips ``value`` exactly, as strict JSON.

    Exact types only: a subclass (an IntEnum, a StrEnum, numpy.float64) would come back as
    its base type. NaN and infinities are not JSON; such values are pickled instead.
    """
    kind = type(value)
    if value is None or kind in (bool, int, str):
        return True
    if kind is float:
        return math.isfinite(value)
    if kind is list:
        return all(_json_safe(v) for v in value)
    if kind is dict:
        return all(type(k) is str and _json_safe(v) for k, v in value.items())
    return False


def encode(value: Any, dest: Path) -> tuple[str, Codec, int]:
    """Serialize ``value`` to ``dest``; return (sha256, codec, size)."""
    if isinstance(value, Path):  # a file the step wrote (e.g. in ctx.staging_dir)
        codec: Codec = "file"
        with value.open("rb") as src, dest.open("wb") as raw:
            w = _HashingWriter(raw)
            while chunk := src.read(_CHUNK):
                w.write(chunk)
        return w.sha.hexdigest(), codec, w.size
    with dest.open("wb") as raw:
        w = _HashingWriter(raw)
        if isinstance(value, bytes | bytearray):
            codec = "bytes"
            w.write(bytes(value))
        elif _json_safe(value):
            codec = "json"
            w.write(json.dumps(value, sort_keys=True, separators=(",", ":"),
                               allow_nan=False).encode())
        else:
            codec = "pickle"
            pickle.dump(value, w, protocol=5)  # type: ignore[arg-type]
    return w.sha.hexdigest(), codec, w.size


def decode(path: Path, codec: Codec) -> Any:
    """Read an object written by :func:`encode`."""
    if codec == "file":
        return path
    data = path.read_bytes()
    if codec == "bytes":
        return data
    if codec == "json":
        return json.loads(data)
    return pickle.loads(data)


class ArtifactStore:
    """Objects by sha256 under ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.objects = self.root / "objects"
        self.staging = self.root / "staging"
        self.quarantine = self.root / "quarantine"
        self._staging_s, self._quarantine_s = str(self.staging), str(self.quarantine)
        for d in (self.objects, self.staging, self.quarantine):
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    f"cannot create the artifact store ({exc.strerror or exc})", file=str(d),
                    fix="point --home (or RELIABILITY_HOME) at a writable directory") from None

    def path(self, digest: str) -> Path:
        return self.objects / digest[:2] / digest

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def staging_dir(self, run_id: str) -> Path:
        d = self.staging / run_id
        d.mkdir(parents=True, exist_ok=True)
        return d

    def staging_file(self, run_id: str, step: str, attempt: int) -> Path:
        return self.staging / run_id / f"{step}.{attempt}.out"

    def scratch_dir(self, run_id: str, step: str, attempt: int) -> Path:
        """The attempt's private ``ctx.staging_dir`` (created on first use, in the worker).

        Private, so steps running side by side never overwrite each other's files, and a
        retry never finds (and returns) what a failed attempt half wrote.
        """
        return self.staging / run_id / f"{step}.{attempt}.d"

    def attempt_paths(self, run_id: str, step: str, attempt: int) -> tuple[str, str, str]:
        """``(staging file, scratch dir, quarantine file)`` of an attempt, as strings.

        The same places as :meth:`staging_file`, :meth:`scratch_dir` and
        :meth:`quarantine_file`, built without pathlib: the runner asks once per attempt.
        """
        base = f"{self._staging_s}{os.sep}{run_id}{os.sep}{step}.{attempt}"
        return (f"{base}.out", f"{base}.d",
                f"{self._quarantine_s}{os.sep}{run_id}{os.sep}{step}.{attempt}.out")

    def discard_attempt(self, run_id: str, step: str, attempt: int, *,
                        output: bool = True, scratch: bool = True) -> None:
        """Drop what an attempt left in staging: its output file and its scratch dir (made
        only when the step used ``ctx.staging_dir``; pass False for what is known absent)."""
        if output:
            self.staging_file(run_id, step, attempt).unlink(missing_ok=True)
        if scratch:
            shutil.rmtree(self.scratch_dir(run_id, step, attempt), ignore_errors=True)

    def commit(self, staged: Path, digest: str) -> Path:
        """Atomically move a staged object into place; idempotent for equal content."""
        final = self.path(digest)
        if final.exists():
            staged.unlink(missing_ok=True)
            return final
        final.parent.mkdir(exist_ok=True)
        os.replace(staged, final)
        return final

    def quarantine_file(self, run_id: str, step: str, attempt: int) -> Path:
        """Where a contract-breaking output of this attempt is kept (created on use)."""
        return self.quarantine / run_id / f"{step}.{attempt}.out"

    def load(self, digest: str, codec: Codec) -> Any:
        return decode(self.path(digest), codec)

    def clear_staging(self, run_id: str) -> None:
        """Drop whatever attempts of ``run_id`` left uncommitted (partial writes)."""
        shutil.rmtree(self.staging / run_id, ignore_errors=True)

    def intact(self, digest: str) -> bool:
        """Whether an object is present with exactly its bytes.

        An object whose bytes no longer hash to its name (a torn write after a power loss,
        a disk error, a hand edit) is moved aside to ``quarantine/corrupt/`` for inspection,
        so that committing the true bytes again puts them in place.
        """
        if self.verify(digest):
            return True
        p = self.path(digest)
        if p.exists():
            aside = self.quarantine / "corrupt"
            aside.mkdir(parents=True, exist_ok=True)
            os.replace(p, aside / f"{digest}.{time.time_ns()}")
        return False

    def verify(self, digest: str) -> bool:
        """Re-hash an object; False if it is missing or its bytes changed."""
        p = self.path(digest)
        if not p.is_file():
            return False
        sha = hashlib.sha256()
        with p.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                sha.update(chunk)
        return sha.hexdigest() == digest
