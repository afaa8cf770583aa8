"""The artifact store behaves the same on a POSIX directory and on S3 (moto's real server).

Exactly-once commits, refusal to trust existing objects, verification of reads, quarantine,
staging clean-up and the fsck, each run against both backends.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers_s3 import moto_s3, new_bucket, posix_or_s3

from reliability.errors import CorruptObject
from reliability.runner.store import (
    ArtifactStore,
    ObjectStore,
    encode,
    fsck,
    load_input,
    open_store,
)

pytestmark = pytest.mark.integration

Store = ArtifactStore | ObjectStore


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, Any]]:
    with moto_s3() as options:
        yield options


@pytest.fixture(params=["posix", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    return posix_or_s3(request, tmp_path / "store", part_size=5 << 20)


def _stage(store: Store, value: object, step: str = "s", attempt: int = 1,
           run: str = "r1") -> tuple[str, str, str]:
    store.staging_dir(run)
    staged = store.attempt_paths(run, step, attempt)[0]
    digest, codec, _ = encode(value, staged)
    return staged, digest, codec


def _raw(store: Store, digest: str) -> bytes:
    if isinstance(store, ArtifactStore):
        return store.path(digest).read_bytes()
    return bytes(store.fs.cat_file(store.location(digest).split("://", 1)[1]))


def _overwrite(store: Store, digest: str, data: bytes) -> None:
    """Damage an object behind the store's back (bit rot, a hand edit, a bad sync)."""
    if isinstance(store, ArtifactStore):
        store.path(digest).write_bytes(data)
    else:
        store.fs.pipe_file(store.location(digest).split("://", 1)[1], data)


def _aside(store: Store) -> list[bytes]:
    if isinstance(store, ArtifactStore):
        d = store.quarantine / "corrupt"
        return [p.read_bytes() for p in d.iterdir()] if d.exists() else []
    fs = store.fs
    fs.invalidate_cache()
    keys = fs.find(f"{store.prefix}/quarantine/corrupt/")
    return [bytes(fs.cat_file(k)) for k in keys]


def test_commit_load_roundtrip_and_staging_is_consumed(store: Store) -> None:
    staged, digest, codec = _stage(store, {"rows": [1, 2, 3]})
    store.commit(staged, digest)
    assert store.has(digest) and store.verify(digest)
    assert store.load(digest, codec) == {"rows": [1, 2, 3]}
    value, local = load_input(store.location(digest), codec, None)
    assert value == {"rows": [1, 2, 3]} and local.read_bytes() == _raw(store, digest)
    staged2, digest2, _ = _stage(store, {"rows": [1, 2, 3]}, attempt=2)
    assert digest2 == digest
    store.commit(staged2, digest)  # the same bytes again: a no-op, staging consumed
    assert list(store.digests()) == [digest]
    store.clear_staging("r1")
    staged3, _, _ = _stage(store, b"left behind", attempt=3)  # e.g. a killed attempt
    store.clear_staging("r1")
    with pytest.raises(CorruptObject):  # gone: nothing to read
        load_input(staged3.replace(".out", ""), "bytes", None)


def test_concurrent_commits_of_one_object_write_it_once(store: Store) -> None:
    value = bytes(range(256)) * 1000
    staged = [_stage(store, value, attempt=i)[0] for i in range(1, 7)]
    digest = _stage(store, value, attempt=99)[1]
    errors: list[BaseException] = []

    def commit(path: str) -> None:
        try:
            store.commit(path, digest)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=commit, args=(p,)) for p in staged]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert list(store.digests()) == [digest] and _raw(store, digest) == value
    assert _aside(store) == []  # nothing was ever found corrupt: no replacement happened


def test_a_commit_never_trusts_a_corrupt_existing_object(store: Store) -> None:
    staged, digest, _ = _stage(store, b"true bytes" * 100)
    store.commit(staged, digest)
    _overwrite(store, digest, b"rotten bytes")
    assert not store.verify(digest)
    again, _, _ = _stage(store, b"true bytes" * 100, attempt=2)
    store.commit(again, digest)
    assert _raw(store, digest) == b"true bytes" * 100 and store.verify(digest)
    assert _aside(store) == [b"rotten bytes"]  # kept for inspection
    assert store.repaired == [digest]


def test_concurrent_repairs_of_a_corrupt_object_end_intact(store: Store) -> None:
    value = b"model weights " * 5000
    staged, digest, _ = _stage(store, value)
    store.commit(staged, digest)
    _overwrite(store, digest, b"truncated")
    paths = [_stage(store, value, attempt=i)[0] for i in range(2, 6)]
    threads = [threading.Thread(target=store.commit, args=(p, digest)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _raw(store, digest) == value
    assert set(_aside(store)) == {b"truncated"}


def test_reads_are_verified_and_corrupt_objects_quarantined(store: Store) -> None:
    staged, digest, codec = _stage(store, [1, 2, 3])
    store.commit(staged, digest)
    _overwrite(store, digest, b"[1,2,4]")
    with pytest.raises(CorruptObject, match="not to its name") as info:
        load_input(store.location(digest), codec, None)
    assert info.value.digest == digest and info.value.actual is not None
    assert "reliability resume" in str(info.value)
    assert not store.intact(digest)  # moved aside: a resume recomputes it
    assert not store.has(digest) and _aside(store) == [b"[1,2,4]"]
    with pytest.raises(CorruptObject, match="is missing"):
        load_input(store.location(digest), codec, None)


def test_file_outputs_and_large_objects(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(bytes(range(256)) * (6 << 12))  # 6 MiB: two parts on S3
    staged, digest, codec = _stage(store, src)
    assert codec == "file"
    store.commit(staged, digest)
    assert store.verify(digest)
    path, local = load_input(store.location(digest), codec, tmp_path / "cache")
    assert path == local and local.read_bytes() == src.read_bytes()
    _overwrite(store, digest, b"x")
    again, _, _ = _stage(store, src, attempt=2)
    store.commit(again, digest)
    assert _raw(store, digest) == src.read_bytes()


def test_fsck_against_the_ledger(store: Store) -> None:
    made = {}
    for name, value in {"a": b"alpha", "b": b"beta", "c": b"gamma", "d": b"delta"}.items():
        staged, digest, _ = _stage(store, value, step=name)
        store.commit(staged, digest)
        made[name] = digest
    _overwrite(store, made["a"], b"alphx")
    refs = {made["a"]: [("r1", "a")], made["b"]: [("r1", "b"), ("r2", "b")],
            made["c"]: [("r2", "c")], "f" * 64: [("r3", "gone")]}
    report = fsck(store, refs)
    assert report.corrupt == [(made["a"], [("r1", "a")])]
    assert report.missing == [("f" * 64, [("r3", "gone")])]
    assert report.unreferenced == [made["d"]]
    assert report.checked == 4 and made["a"] in report.quarantined
    assert report.runs_to_resume() == ["r1", "r3"] and not report.ok
    again = fsck(store, refs)  # quarantined: now missing, still needs its run
    assert not again.corrupt and (made["a"], [("r1", "a")]) in again.missing


def test_open_store_picks_the_backend(tmp_path: Path, s3: dict[str, Any]) -> None:
    assert isinstance(open_store(tmp_path / "st"), ArtifactStore)
    url = new_bucket(s3)
    remote = open_store(url, s3)
    assert isinstance(remote, ObjectStore)
    assert isinstance(open_store(remote.spec()), ObjectStore)
    with pytest.raises(OSError, match="cannot reach the object store bucket"):
        ObjectStore("s3://no-such-bucket-here/x", s3)
