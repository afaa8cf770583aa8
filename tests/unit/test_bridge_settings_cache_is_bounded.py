"""The settings a host's task processes cache in the home stay bounded: a new entry (the
project's files changed) drops the oldest beyond the limit and temporary files a writer
left behind; an entry that was dropped is computed again when it is needed."""

from __future__ import annotations

import os
import time
from pathlib import Path

from reliability.adapters import _settings


def _key(i: int) -> str:
    return f"{i:04x}".ljust(64, "0")


def _entry(cache: Path, i: int) -> Path:
    return cache / f"bridge-{_key(i)[:32]}.json"


def test_the_cache_keeps_the_newest_entries_and_drops_leftovers(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    leftover = cache / ".bridge-dead.tmp"
    leftover.write_text("{")
    old = time.time() - 7200
    os.utime(leftover, (old, old))
    fresh_tmp = cache / ".bridge-writing.tmp"  # a writer still at work: kept
    fresh_tmp.write_text("{")
    computed: list[int] = []
    for i in range(_settings._KEEP + 6):
        value = _settings._cached(tmp_path, _key(i),
                                  lambda i=i: computed.append(i) or {"n": i})
        assert value == {"n": i}
        os.utime(_entry(cache, i), (old + i, old + i))  # written in this order
    newest = _settings._KEEP + 5
    assert len(list(cache.glob("bridge-*.json"))) == _settings._KEEP
    assert _entry(cache, newest).exists()
    assert not _entry(cache, 0).exists()  # the oldest went first
    assert not leftover.exists() and fresh_tmp.exists()
    # a kept entry is read, not computed again; a dropped one is computed again
    assert _settings._cached(tmp_path, _key(newest), lambda: {"n": -1}) == {"n": newest}
    assert _settings._cached(tmp_path, _key(0), lambda: {"n": 0}) == {"n": 0}
    assert computed == list(range(_settings._KEEP + 6))
