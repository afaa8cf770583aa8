"""Content-addressed artifact store with atomic, exactly-once commits, on two backends.

A step's output is serialized by its worker into ``staging/<run>/<step>.<attempt>.out``
(hashing as it writes); the runner commits it into ``objects/<h[:2]>/<h>``. An object
exists completely or not at all, and a commit never trusts what is already there:

* :class:`ArtifactStore` -- a POSIX directory, local or a shared mount every worker reaches.
  A commit creates the object with ``link(2)``, which fails if the name exists (write-if-
  absent); an existing object is re-hashed, and a corrupt one is kept aside under
  ``quarantine/corrupt/`` and replaced with one ``rename(2)``.
* :class:`ObjectStore` -- an object store through fsspec (the S3 API). The runner streams
  the staged object, re-hashing it, into a conditional ``PutObject`` with
  ``If-None-Match: *`` (write-if-absent: of concurrent commits exactly one creates the
  object); an existing object is re-hashed, and a corrupt one is copied aside and replaced
  with ``If-Match: <its ETag>``, so a replacement never overwrites bytes it did not check.

Workers read inputs through :func:`load_input`, which hashes the bytes as it decodes them:
a step never consumes an object whose bytes do not match its name. :func:`fsck` checks the
whole store against the ledger (``reliability verify``). Outputs that broke a contract go to
``quarantine/<run>/`` for inspection and are never committed.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import json
import logging
import math
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import field
from pathlib import Path
from typing import IO, Any, ClassVar, Protocol, cast

from reliability._record import record
from reliability._sha import sha256
from reliability.errors import CorruptObject, StorageError

__all__ = [
    "ArtifactStore", "Codec", "FsckReport", "ObjectStore", "Store", "decode", "encode",
    "fsck", "is_remote", "load_input", "open_store", "remote_options", "set_remote_options",
    "storage_error",
]

Codec = str  # "json" | "bytes" | "file" | "pickle"
_CHUNK = 1 << 20
_log = logging.getLogger("reliability.store")

#: errno values that mean "this place cannot be written", not "try again"
_ENV_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT,
                         errno.ENOTDIR, errno.EISDIR})
_FIX_CORRUPT = ("run `reliability verify` to quarantine what is corrupt, then "
                "`reliability resume RUN` recomputes it")


class _HashingWriter(io.RawIOBase):
    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.sha = sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        # bytes, or a buffer: the C pickler hands a large array's data over without a copy
        view = b if isinstance(b, bytes) else memoryview(b).cast("B")
        self.sha.update(view)
        self.fh.write(view)
        self.size += len(view)
        return len(view)


def _json_safe(value: Any, _inside: set[int] | None = None) -> bool:
    """True if json round-trips ``value`` exactly, as strict JSON.

    Exact types only: a subclass (an IntEnum, a StrEnum, numpy.float64) would come back as
    its base type. NaN and infinities are not JSON; such values are pickled instead, and so
    is a list or dict that contains itself (``_inside``: the containers being looked into).
    """
    kind = type(value)
    if value is None or kind in (bool, int, str):
        return True
    if kind is float:
        return math.isfinite(value)
    if kind is not list and kind is not dict:
        return False
    inside = set() if _inside is None else _inside
    if id(value) in inside:
        return False
    inside.add(id(value))
    if kind is list:
        safe = all(_json_safe(v, inside) for v in value)
    else:
        safe = all(type(k) is str and _json_safe(v, inside) for k, v in value.items())
    inside.discard(id(value))
    return safe


# -- locations: a local path, or a URL of an fsspec file system ---------------------------
_REMOTE: dict[str, dict[str, Any]] = {}  # store URL -> fsspec storage options
_REMOTE_LOCK = threading.Lock()


def remote_options() -> dict[str, dict[str, Any]]:
    """The storage options of every object store opened in this process, by URL (what an
    executor ships to workers on other machines with :func:`set_remote_options`)."""
    with _REMOTE_LOCK:
        return {url: dict(opts) for url, opts in _REMOTE.items()}


def set_remote_options(options: Mapping[str, Mapping[str, Any]]) -> None:
    with _REMOTE_LOCK:
        _REMOTE.update({url: dict(opts) for url, opts in options.items()})


def is_remote(location: str | Path) -> bool:
    """Whether ``location`` is a URL of a remote file system (``s3://...``)."""
    return isinstance(location, str) and "://" in location and not location.startswith(
        "file://")


def _fs(url: str) -> tuple[Any, str]:
    """The fsspec file system and path of ``url``, with the options of the store it is in."""
    try:
        import fsspec
    except ImportError:  # pragma: no cover - fsspec comes with the dask extra
        from reliability.errors import MissingDependencyError

        raise MissingDependencyError(
            f"{url}: an object store needs fsspec and s3fs. Fix: pip install "
            "'pipeline-reliability[dask]'") from None
    with _REMOTE_LOCK:
        match = max((u for u in _REMOTE if url == u or url.startswith(u + "/")),
                    key=len, default=None)
        options = dict(_REMOTE[match]) if match is not None else {}
    fs, path = fsspec.core.url_to_fs(url, **options)
    return fs, str(path)


def _open(location: str | Path, mode: str) -> IO[bytes]:
    if is_remote(location):
        fs, path = _fs(str(location))
        if "r" in mode:
            fs.invalidate_cache(path)  # never a size or ETag from before a replacement
        return cast(IO[bytes], fs.open(path, mode))
    p = Path(location)
    if "w" in mode:
        p.parent.mkdir(parents=True, exist_ok=True)
    return p.open(mode)


def storage_error(exc: OSError, what: str, where: str | Path) -> OSError:
    """``exc`` as a :class:`StorageError` if it is an environment problem (permissions, a
    read-only or full disk, a path through a file), else ``exc`` itself (may be transient)."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, PermissionError) or exc.errno in _ENV_ERRNOS:
        reason = exc.strerror or str(exc) or type(exc).__name__
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        fix = ("free space (or raise the quota) on the store's file system" if full else
               "make the store writable by the user running the steps (check owner, mode "
               "and mount options), or point --home / RELIABILITY_HOME at a writable place")
        return StorageError(f"cannot {what}: {reason}", path=str(exc.filename or where),
                            fix=fix)
    return exc


# -- encoding -----------------------------------------------------------------------------
def encode(value: Any, dest: str | Path) -> tuple[str, Codec, int]:
    """Serialize ``value`` to ``dest`` (a path or a store URL); return (sha256, codec, size).

    A :class:`~pathlib.Path` value is a file the step wrote (e.g. in ``ctx.staging_dir``):
    its bytes are copied as they are.
    """
    if isinstance(value, Path):
        with value.open("rb") as src, _open(dest, "wb") as raw:
            w = _HashingWriter(raw)
            while chunk := src.read(_CHUNK):
                w.write(chunk)
        return w.sha.hexdigest(), "file", w.size
    tree = True
    with _open(dest, "wb") as raw:
        w = _HashingWriter(raw)
        if isinstance(value, bytes | bytearray):
            codec: Codec = "bytes"
            w.write(bytes(value))
        elif _json_safe(value):
            codec = "json"
            w.write(json.dumps(value, sort_keys=True, separators=(",", ":"),
                               allow_nan=False).encode())
        else:
            codec = "pickle"
            tree = _pickle_as_tree(value, w)
    if not tree:  # a value that refers to itself: written again, by the slower pickler
        with _open(dest, "wb") as raw:
            w = _HashingWriter(raw)
            _pickle_by_value(value, w)
    return w.sha.hexdigest(), codec, w.size


def _pickle_as_tree(value: Any, file: io.RawIOBase | IO[bytes]) -> bool:
    """Pickle ``value`` (protocol 5) as a tree: every object written in full wherever it
    occurs, never as a reference to an earlier one -- so the bytes depend on the value
    alone, not on which of its equal parts are one object (which changes with the history
    of the process that pickles it: a class's instances share the key strings of its first
    instance, so a scikit-learn model trained in a process that had unpickled one before
    keys its attribute ``C`` with the very string NumPy writes as an array's order, and in a
    fresh process with another). This is the C pickler with its memo off ("fast" mode):
    as fast as :func:`pickle.dumps`; parts shared in the value load as equal copies.
    Returns False, having written part of it, for a value that refers to itself (a cycle
    has no tree): :func:`_pickle_by_value` writes those."""
    import pickle

    pickler = pickle.Pickler(file, protocol=5)
    pickler.fast = True  # no memo: no back-references
    try:
        pickler.dump(value)
    except ValueError as exc:
        if "cyclic" not in str(exc):
            raise
        return False
    return True


def _pickle_by_value(value: Any, file: io.RawIOBase) -> None:
    """Pickle ``value`` (protocol 5) so that its bytes depend on the value alone, keeping
    its shared parts and cycles (the pickles of values that refer to themselves).

    A pickler writes an object once and refers back to it where the same object recurs; an
    equal string that is another object is written again. Whether equal strings are one
    object changes with the history of the process: a class's instances share the key strings
    of its first instance, so a scikit-learn model trained in a process that had unpickled one
    before keys its attribute ``C`` with the very string NumPy writes as an array's order, and
    in a fresh process with another -- one model, two digests, by which worker trained it.
    Here equal strings are written once, whatever their identity. All else is pickled as by
    :func:`pickle.dump` (this is its Python implementation: as fast on arrays, slower on
    values made of many small Python objects) and loads with :func:`pickle.load`.
    """
    _value_pickler_class()(file).dump(value)


@functools.cache
def _value_pickler_class() -> Any:
    import pickle  # on first use: a task whose steps return JSON values never needs it
    import types

    stock: Any = pickle._Pickler  # its savers are not in the type stubs
    save_str: Any = stock.save_str

    class ValuePickler(pickle._Pickler):
        # the standard library's own savers, named one by one: the class's dispatch dict
        # is shared, and libraries add to it (dill registers its own savers for slices,
        # dicts, functions and types at import, whose pickles then need dill to load)
        dispatch: ClassVar[dict[type, Any]] = {
            type(None): stock.save_none, bool: stock.save_bool, int: stock.save_long,
            float: stock.save_float, bytes: stock.save_bytes,
            bytearray: stock.save_bytearray, tuple: stock.save_tuple, list: stock.save_list,
            dict: stock.save_dict, set: stock.save_set, frozenset: stock.save_frozenset,
            types.FunctionType: stock.save_global, type: stock.save_type}

        def __init__(self, file: io.RawIOBase) -> None:
            super().__init__(file, protocol=5)
            self._strings: dict[str, int] = {}  # string -> its memo index

        def _save_str(self, obj: str) -> None:
            this: Any = self  # the memo and opcode writers are not in the pickle type stubs
            index = self._strings.get(obj)
            if index is not None:
                this.write(this.get(index))
                return
            save_str(self, obj)
            self._strings[obj] = this.memo[id(obj)][0]

        def _save_picklebuffer(self, obj: pickle.PickleBuffer) -> None:
            # in band, as the C pickler writes it: no copy of a large array's data, and
            # the buffer (not a bytes copy of it) is what is memoized -- the Python
            # pickler memoizes the copy, and every empty buffer's copy is the one b""
            this: Any = self
            with obj.raw() as view:  # a non-contiguous buffer raises BufferError here
                n = view.nbytes
                if not view.readonly:
                    head = pickle.BYTEARRAY8 + n.to_bytes(8, "little")
                elif n <= 0xFF:
                    head = pickle.SHORT_BINBYTES + n.to_bytes(1, "little")
                elif n <= 0xFFFFFFFF:
                    head = pickle.BINBYTES + n.to_bytes(4, "little")
                else:
                    head = pickle.BINBYTES8 + n.to_bytes(8, "little")
                if n >= this.framer._FRAME_SIZE_TARGET:
                    this._write_large_bytes(head, view)
                else:
                    this.write(head + view.tobytes())
            this.memoize(obj)

        dispatch[str] = cast(Any, _save_str)
        dispatch[pickle.PickleBuffer] = cast(Any, _save_picklebuffer)

    return ValuePickler


def _decode_bytes(data: bytes, codec: Codec) -> Any:
    if codec == "bytes":
        return data
    if codec == "json":
        return json.loads(data)
    import pickle

    return pickle.loads(data)


def decode(path: Path, codec: Codec) -> Any:
    """Read an object written by :func:`encode` (no verification: see :func:`load_input`)."""
    if codec == "file":
        return path
    return _decode_bytes(path.read_bytes(), codec)


def _name(location: str | Path) -> str:
    return str(location).rstrip("/").rsplit("/", 1)[-1]


def _corrupt(location: str | Path, digest: str, actual: str | None) -> CorruptObject:
    what = "is missing" if actual is None else f"has bytes that hash to {actual[:12]}"
    return CorruptObject(f"object {digest[:12]} {what}, not to its name", path=str(location),
                         digest=digest, actual=actual, fix=_FIX_CORRUPT)


#: verification of reads and of existing objects on commit; False only to measure what it
#: costs (bench/bench_store.py)
VERIFY = True


def load_input(location: str | Path, codec: Codec, cache_dir: str | Path | None = None
               ) -> tuple[Any, Path]:
    """Load a committed object for a step, hashing its bytes as they are read.

    Returns the value and a local file holding the bytes (``ctx.input_files``): the object
    itself on a POSIX store, a verified download into ``cache_dir`` from an object store.
    Raises :class:`CorruptObject` when the bytes do not hash to the object's name (the
    step never sees them) or the object is missing.
    """
    if not is_remote(location):
        return _load_local(Path(location), codec)
    return _load_remote(str(location), codec, cache_dir)


def _load_local(path: Path, codec: Codec) -> tuple[Any, Path]:
    digest, sha = path.name, sha256()
    try:
        if codec == "file":
            if VERIFY:
                with path.open("rb") as fh:
                    while chunk := fh.read(_CHUNK):
                        sha.update(chunk)
            data = b""
        else:
            data = path.read_bytes()
            if VERIFY:
                sha.update(data)
    except FileNotFoundError:
        raise _corrupt(path, digest, None) from None
    if VERIFY and sha.hexdigest() != digest:
        raise _corrupt(path, digest, sha.hexdigest())
    return (path if codec == "file" else _decode_bytes(data, codec)), path


def _load_remote(location: str, codec: Codec, cache_dir: str | Path | None
                 ) -> tuple[Any, Path]:
    import tempfile

    digest, sha = _name(location), sha256()
    if cache_dir is None:
        cache_dir = tempfile.mkdtemp(prefix="reliability-in-")
    local = Path(cache_dir) / digest
    local.parent.mkdir(parents=True, exist_ok=True)
    part = local.with_name(f".{digest}.{os.getpid()}.part")
    buf = bytearray()
    try:
        with _open(location, "rb") as src, part.open("wb") as out:
            while chunk := src.read(8 * _CHUNK):
                sha.update(chunk)
                out.write(chunk)
                if codec != "file":
                    buf += chunk
    except FileNotFoundError:
        part.unlink(missing_ok=True)
        raise _corrupt(location, digest, None) from None
    if sha.hexdigest() != digest:
        part.unlink(missing_ok=True)
        raise _corrupt(location, digest, sha.hexdigest())
    os.replace(part, local)
    return (local if codec == "file" else _decode_bytes(bytes(buf), codec)), local


def _hash_stream(fh: IO[bytes]) -> str:
    sha = sha256()
    while chunk := fh.read(8 * _CHUNK):
        sha.update(chunk)
    return sha.hexdigest()


# -- the stores ---------------------------------------------------------------------------
class Store(Protocol):
    """What the run loop, the workers and ``reliability verify`` use of a store."""

    url: str
    root: Any  # the directory (POSIX) or the URL (object store)

    def location(self, digest: str) -> str: ...
    def path(self, digest: str) -> Any: ...
    def has(self, digest: str) -> bool: ...
    def staging_dir(self, run_id: str) -> Any: ...
    def attempt_paths(self, run_id: str, step: str, attempt: int) -> tuple[str, str, str]: ...
    def discard_attempt(self, run_id: str, step: str, attempt: int, *,
                        output: bool = True, scratch: bool = True) -> None: ...
    def commit(self, staged: str | Path, digest: str) -> Any: ...
    def load(self, digest: str, codec: Codec) -> Any: ...
    def clear_staging(self, run_id: str) -> None: ...
    def verify(self, digest: str) -> bool: ...
    def intact(self, digest: str) -> bool: ...
    def quarantine_object(self, digest: str) -> str | None: ...
    def digests(self) -> Iterator[str]: ...
    def spec(self) -> dict[str, Any]: ...


class ArtifactStore:
    """Objects by sha256 under the directory ``root`` (local, or a mount shared by workers)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.url = str(self.root)
        self.objects = self.root / "objects"
        self.staging = self.root / "staging"
        self.quarantine = self.root / "quarantine"
        self._staging_s, self._quarantine_s = str(self.staging), str(self.quarantine)
        for d in (self.objects, self.staging, self.quarantine):
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(
                    f"cannot create the artifact store ({exc.strerror or exc})", path=str(d),
                    fix="point --home (or RELIABILITY_HOME) at a writable directory") from None
        self.repaired: list[str] = []  # corrupt objects a commit replaced (kept aside)

    def spec(self) -> dict[str, Any]:
        """What a worker needs to reach this store (see :func:`open_store`)."""
        return {"url": self.url, "options": {}}

    def path(self, digest: str) -> Path:
        return self.objects / digest[:2] / digest

    def location(self, digest: str) -> str:
        return str(self.path(digest))

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def staging_dir(self, run_id: str) -> Path:
        d = self.staging / run_id
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise storage_error(exc, "create the run's staging directory", d) from exc
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
        import shutil

        if output:
            self.staging_file(run_id, step, attempt).unlink(missing_ok=True)
        if scratch:
            shutil.rmtree(self.scratch_dir(run_id, step, attempt), ignore_errors=True)

    def commit(self, staged: str | Path, digest: str) -> Path:
        """Move a staged object into place, exactly once; never trust an existing object.

        The object is created with ``link(2)`` (fails if the name exists). If it exists, its
        bytes are re-hashed: intact, the staged copy is dropped; corrupt, it is kept aside
        in ``quarantine/corrupt/`` and the staged bytes replace it with one ``rename(2)``,
        so readers see the old or the new file, never none.
        """
        staged, final = Path(staged), self.path(digest)
        try:
            final.parent.mkdir(exist_ok=True)
            try:
                os.link(staged, final)
            except FileExistsError:
                if not VERIFY or self.verify(digest):
                    staged.unlink()
                    return final
                with self._repairing(digest):  # one repair at a time, across processes
                    if self.verify(digest):  # another commit repaired it meanwhile
                        staged.unlink()
                        return final
                    self._keep_aside(final, digest)
                    os.replace(staged, final)
                self.repaired.append(digest)
                _log.warning("object %s was corrupt: kept aside, replaced by the committed "
                             "bytes", digest)
                return final
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                    raise
                # no hard links here (some FUSE/SMB mounts): same content, so a lost race
                # between two renames of equal bytes is harmless
                if final.exists() and self.verify(digest):
                    staged.unlink()
                    return final
                if final.exists():
                    self._keep_aside(final, digest)
                os.replace(staged, final)
                return final
            staged.unlink()
        except OSError as exc:
            raise storage_error(exc, "commit an object into the store", final) from exc
        return final

    @contextlib.contextmanager
    def _repairing(self, digest: str) -> Iterator[None]:
        import fcntl

        self.quarantine.mkdir(parents=True, exist_ok=True)
        with (self.quarantine / f".repair-{digest[:16]}.lock").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _keep_aside(self, final: Path, digest: str) -> None:
        """Keep a copy of a corrupt object for inspection (a second name for its inode)."""
        import shutil

        aside = self.quarantine / "corrupt"
        aside.mkdir(parents=True, exist_ok=True)
        dest = aside / f"{digest}.{time.time_ns()}"
        try:
            os.link(final, dest)
        except FileNotFoundError:
            return
        except OSError:
            with contextlib.suppress(FileNotFoundError):
                shutil.copyfile(final, dest)

    def quarantine_file(self, run_id: str, step: str, attempt: int) -> Path:
        """Where a contract-breaking output of this attempt is kept (created on use)."""
        return self.quarantine / run_id / f"{step}.{attempt}.out"

    def load(self, digest: str, codec: Codec) -> Any:
        """The object's value, verified (raises :class:`CorruptObject` if it is not)."""
        return load_input(self.location(digest), codec)[0]

    def clear_staging(self, run_id: str) -> None:
        """Drop whatever attempts of ``run_id`` left uncommitted (partial writes)."""
        import shutil

        shutil.rmtree(self.staging / run_id, ignore_errors=True)

    def intact(self, digest: str) -> bool:
        """Whether an object is present with exactly its bytes.

        An object whose bytes no longer hash to its name (a torn write after a power loss,
        a disk error, a hand edit) is moved aside to ``quarantine/corrupt/`` for inspection,
        so that committing the true bytes again puts them in place.
        """
        if self.verify(digest):
            return True
        self.quarantine_object(digest)
        return False

    def quarantine_object(self, digest: str) -> str | None:
        """Move a (corrupt) object aside; where it went, or None if it was not there."""
        p = self.path(digest)
        aside = self.quarantine / "corrupt"
        aside.mkdir(parents=True, exist_ok=True)
        dest = aside / f"{digest}.{time.time_ns()}"
        try:
            os.replace(p, dest)
        except FileNotFoundError:
            return None
        return str(dest)

    def verify(self, digest: str) -> bool:
        """Re-hash an object; False if it is missing or its bytes changed."""
        try:
            with self.path(digest).open("rb") as fh:
                return _hash_stream(fh) == digest
        except (FileNotFoundError, IsADirectoryError):
            return False

    def digests(self) -> Iterator[str]:
        """Names of every object in the store."""
        for fan in sorted(self.objects.iterdir()):
            if fan.is_dir():
                for obj in sorted(fan.iterdir()):
                    if obj.is_file():
                        yield obj.name


class ObjectStore:
    """Objects by sha256 under ``url`` (``s3://bucket/prefix``) on an fsspec file system.

    ``storage_options`` go to fsspec (for S3: ``endpoint_url``, ``key``, ``secret``...);
    without them the usual AWS environment and config files apply. Large objects are
    committed in ``part_size`` parts, completed with the same conditions.
    """

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None, *,
                 part_size: int = 64 << 20) -> None:
        import tempfile

        self.url = url.rstrip("/")
        self.part_size = part_size
        with _REMOTE_LOCK:
            if storage_options is None:  # the options this process opened it with before
                storage_options = _REMOTE.get(self.url, {})
            self.options = dict(storage_options)
            _REMOTE[self.url] = dict(self.options)
        self.fs, key = _fs(self.url)
        self.root = self.url
        self.protocol = self.url.split("://", 1)[0]
        self.prefix = key.rstrip("/")
        self.bucket = self.prefix.split("/", 1)[0]
        self.repaired: list[str] = []
        scratch_key = sha256(self.url.encode()).hexdigest()[:12]
        self._scratch = Path(tempfile.gettempdir()) / "reliability-scratch" / scratch_key
        try:
            self.fs.call_s3("head_bucket", Bucket=self.bucket)
        except Exception as exc:  # OSError, or botocore's (no credentials, bad endpoint)
            raise StorageError(
                f"cannot reach the object store bucket {self.bucket!r} ({exc})", path=self.url,
                fix="create the bucket, check the endpoint and the credentials "
                    "(store.options in reliability.yaml, or the AWS_* environment)") from None

    def spec(self) -> dict[str, Any]:
        return {"url": self.url, "options": dict(self.options)}

    # -- names ----------------------------------------------------------------------------
    def _key(self, *parts: str) -> str:
        return "/".join((self.prefix, *parts))

    def _url(self, key: str) -> str:
        return f"{self.protocol}://{key}"

    def _bk(self, key: str) -> tuple[str, str]:
        bucket, _, k = key.partition("/")
        return bucket, k

    def path(self, digest: str) -> str:
        return self.location(digest)

    def location(self, digest: str) -> str:
        return self._url(self._key("objects", digest[:2], digest))

    def staging_dir(self, run_id: str) -> str:
        return self._url(self._key("staging", run_id))

    def attempt_paths(self, run_id: str, step: str, attempt: int) -> tuple[str, str, str]:
        base = f"{step}.{attempt}"
        return (self._url(self._key("staging", run_id, f"{base}.out")),
                str(self._scratch / run_id / f"{base}.d"),
                self._url(self._key("quarantine", run_id, f"{base}.out")))

    def quarantine_file(self, run_id: str, step: str, attempt: int) -> str:
        return self.attempt_paths(run_id, step, attempt)[2]

    # -- primitive calls ------------------------------------------------------------------
    def _head(self, key: str) -> dict[str, Any] | None:
        bucket, k = self._bk(key)
        try:
            return cast(dict[str, Any], self.fs.call_s3("head_object", Bucket=bucket, Key=k))
        except FileNotFoundError:
            return None

    def _rm(self, key: str) -> None:
        bucket, k = self._bk(key)
        with contextlib.suppress(FileNotFoundError):
            self.fs.call_s3("delete_object", Bucket=bucket, Key=k)

    def has(self, digest: str) -> bool:
        return self._head(self._key("objects", digest[:2], digest)) is not None

    def _hash(self, key: str) -> tuple[str | None, str | None]:
        """(sha256 of the object's bytes, its ETag), or (None, None) if it is missing."""
        head = self._head(key)
        if head is None:
            return None, None
        try:
            with _open(self._url(key), "rb") as fh:
                return _hash_stream(fh), str(head["ETag"])
        except FileNotFoundError:
            return None, None

    def _upload(self, key: str, staged_key: str, digest: str, cond: dict[str, str]) -> None:
        """Stream ``staged_key`` into ``key`` under the condition ``cond`` (If-None-Match or
        If-Match), re-hashing the bytes; nothing is written unless they hash to ``digest``.

        Raises FileExistsError / OSError when the condition fails.
        """
        bucket, k = self._bk(key)
        sha = sha256()
        with _open(self._url(staged_key), "rb") as src:
            first = src.read(self.part_size)
            sha.update(first)
            nxt = src.read(self.part_size)
            if not nxt:  # one part: one conditional PutObject
                if sha.hexdigest() != digest:
                    raise _corrupt(self._url(staged_key), digest, sha.hexdigest())
                self.fs.call_s3("put_object", Bucket=bucket, Key=k, Body=first, **cond)
                return
            upload = self.fs.call_s3("create_multipart_upload", Bucket=bucket, Key=k)
            uid = upload["UploadId"]
            try:
                parts: list[dict[str, Any]] = []
                chunk: bytes = first
                while chunk:
                    part = self.fs.call_s3("upload_part", Bucket=bucket, Key=k, UploadId=uid,
                                           PartNumber=len(parts) + 1, Body=chunk)
                    parts.append({"PartNumber": len(parts) + 1, "ETag": part["ETag"]})
                    chunk, nxt = nxt, (src.read(self.part_size) if nxt else b"")
                    sha.update(chunk)
                if sha.hexdigest() != digest:
                    raise _corrupt(self._url(staged_key), digest, sha.hexdigest())
                self.fs.call_s3("complete_multipart_upload", Bucket=bucket, Key=k,
                                UploadId=uid, MultipartUpload={"Parts": parts}, **cond)
            except BaseException:
                with contextlib.suppress(Exception):
                    self.fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=k,
                                    UploadId=uid)
                raise

    # -- the store ------------------------------------------------------------------------
    def commit(self, staged: str | Path, digest: str) -> str:
        """Put a staged object in place, exactly once; never trust an existing object.

        Write-if-absent (``If-None-Match: *``): of concurrent commits of one digest exactly
        one creates the object. An existing object is re-hashed; a corrupt one is copied to
        ``quarantine/corrupt/`` and replaced with ``If-Match: <its ETag>``, which fails if
        anyone changed it since it was hashed (then it is checked again).
        """
        staged_url = str(staged)
        staged_key = self._fs_path(staged_url)
        final = self._key("objects", digest[:2], digest)
        try:
            for _ in range(8):
                try:
                    self._upload(final, staged_key, digest, {"IfNoneMatch": "*"})
                    break
                except FileExistsError:
                    pass
                actual, etag = self._hash(final)
                if actual == digest:
                    break
                if etag is None:
                    continue  # deleted meanwhile: create it again
                if self._copy_aside(final, digest, etag) is None:
                    continue  # repaired by another commit meanwhile: look again
                try:
                    self._upload(final, staged_key, digest, {"IfMatch": etag})
                except CorruptObject:
                    raise
                except OSError:
                    continue  # changed since it was hashed: look again
                self.repaired.append(digest)
                _log.warning("object %s was corrupt: kept aside, replaced by the committed "
                             "bytes", digest)
                break
            else:
                raise StorageError(f"could not commit object {digest[:12]}: it kept changing "
                                   "while being checked", path=self._url(final),
                                   fix="find what else writes into the store's objects/")
            self._rm(staged_key)
        except OSError as exc:
            raise storage_error(exc, "commit an object into the store", self._url(final)
                                ) from exc
        return self._url(final)

    def _fs_path(self, url: str) -> str:
        return url.split("://", 1)[1] if "://" in url else url

    def _copy_aside(self, key: str, digest: str, etag: str | None = None) -> str | None:
        """Copy the (corrupt) object ``key`` to ``quarantine/corrupt/``; with ``etag``, only
        that version of it: None if it changed meanwhile, or the copy turned out intact."""
        dest = self._key("quarantine", "corrupt", f"{digest}.{time.time_ns()}")
        bucket, k = self._bk(key)
        dbucket, dk = self._bk(dest)
        cond = {"CopySourceIfMatch": etag} if etag else {}
        try:
            self.fs.call_s3("copy_object", Bucket=dbucket, Key=dk,
                            CopySource={"Bucket": bucket, "Key": k}, **cond)
        except FileNotFoundError:
            return None
        except OSError:
            if etag is None:
                raise
            return None  # another version by now
        if etag is not None and self._hash(dest)[0] == digest:  # a server that ignored
            self._rm(dest)  # the condition copied a repaired object: not corrupt
            return None
        return self._url(dest)

    def discard_attempt(self, run_id: str, step: str, attempt: int, *,
                        output: bool = True, scratch: bool = True) -> None:
        import shutil

        staged, scratch_dir, _ = self.attempt_paths(run_id, step, attempt)
        if output:
            self._rm(self._fs_path(staged))
        if scratch:
            shutil.rmtree(scratch_dir, ignore_errors=True)

    def load(self, digest: str, codec: Codec) -> Any:
        import shutil
        import tempfile

        with tempfile.TemporaryDirectory(prefix="reliability-load-") as tmp:
            value, _ = load_input(self.location(digest), codec, tmp)
            if codec == "file":  # the caller gets a file that outlives the temp dir
                keep = Path(tempfile.mkdtemp(prefix="reliability-load-")) / digest
                shutil.move(str(value), keep)
                return keep
            return value

    def clear_staging(self, run_id: str) -> None:
        import shutil

        self.fs.invalidate_cache()
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self._key("staging", run_id), recursive=True)
        shutil.rmtree(self._scratch / run_id, ignore_errors=True)

    def verify(self, digest: str) -> bool:
        return self._hash(self._key("objects", digest[:2], digest))[0] == digest

    def intact(self, digest: str) -> bool:
        if self.verify(digest):
            return True
        self.quarantine_object(digest)
        return False

    def quarantine_object(self, digest: str) -> str | None:
        key = self._key("objects", digest[:2], digest)
        if self._head(key) is None:
            return None
        dest = self._copy_aside(key, digest)
        self._rm(key)
        return dest

    def digests(self) -> Iterator[str]:
        prefix = self._key("objects") + "/"
        bucket, k = self._bk(prefix)
        token: str | None = None
        while True:
            kw: dict[str, Any] = {"Bucket": bucket, "Prefix": k}
            if token:
                kw["ContinuationToken"] = token
            page = self.fs.call_s3("list_objects_v2", **kw)
            for item in page.get("Contents", ()):
                yield str(item["Key"]).rsplit("/", 1)[-1]
            token = page.get("NextContinuationToken")
            if not token:
                return


def open_store(location: str | Path | Mapping[str, Any],
               storage_options: Mapping[str, Any] | None = None) -> ArtifactStore | ObjectStore:
    """The store at ``location``: a directory, or an object store URL (``s3://b/prefix``).

    Also accepts the ``spec()`` of a store, as workers on other machines receive it.
    """
    if isinstance(location, Mapping):
        storage_options = location.get("options") or storage_options
        location = str(location["url"])
    if is_remote(location):
        return ObjectStore(str(location), storage_options)
    loc = str(location)
    return ArtifactStore(loc[len("file://"):] if loc.startswith("file://") else loc)


# -- fsck ---------------------------------------------------------------------------------
@record
class FsckReport:
    """What ``reliability verify`` found. ``corrupt`` and ``missing`` list
    ``(digest, [(run, step), ...])`` of committed outputs; ``quarantined`` where the bad
    bytes went; ``unreferenced`` objects no ledger row names (kept, not an error)."""

    checked: int = 0
    corrupt: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)
    missing: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)
    quarantined: dict[str, str] = field(default_factory=dict)
    unreferenced: list[str] = field(default_factory=list)
    bytes_read: int = 0

    @property
    def ok(self) -> bool:
        return not self.corrupt and not self.missing

    def runs_to_resume(self) -> list[str]:
        return sorted({run for _, uses in (*self.corrupt, *self.missing) for run, _ in uses})


def fsck(store: Store, refs: Mapping[str, list[tuple[str, str]]], *,
         quarantine: bool = True, all_objects: bool = True) -> FsckReport:
    """Re-hash objects of ``store`` against ``refs`` (digest -> ``[(run, step)]`` from the
    ledger). Corrupt objects are moved to ``quarantine/corrupt/`` unless ``quarantine`` is
    False; with ``all_objects`` unreferenced objects are checked too."""
    report = FsckReport()
    present = set(store.digests())
    names = sorted(set(refs) | (present if all_objects else set()))
    for digest in names:
        uses = list(refs.get(digest, ()))
        if digest not in present:
            if uses:
                report.missing.append((digest, uses))
            continue
        report.checked += 1
        if store.verify(digest):
            if not uses:
                report.unreferenced.append(digest)
            continue
        report.corrupt.append((digest, uses))
        if quarantine:
            where = store.quarantine_object(digest)
            if where is not None:
                report.quarantined[digest] = where
    return report
