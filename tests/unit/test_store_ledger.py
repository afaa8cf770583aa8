from __future__ import annotations

import json
from pathlib import Path

import pytest

from reliability.errors import LedgerError
from reliability.runner import ArtifactStore, Ledger
from reliability.runner.store import decode, encode


@pytest.mark.parametrize("value", [None, {"b": 1, "a": [1.5, "x"]}, b"\x00raw", 3.25,
                                   {"set": {1, 2}}, ("tuple", 1)])
def test_encode_decode_roundtrip_and_hash_is_content(tmp_path: Path, value: object) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    d1, codec, size = encode(value, a)
    d2, _, _ = encode(value, b)
    assert d1 == d2 and size == a.stat().st_size
    assert decode(a, codec) == value


def test_json_codec_is_canonical(tmp_path: Path) -> None:
    d1, c1, _ = encode({"a": 1, "b": 2}, tmp_path / "1")
    d2, _, _ = encode({"b": 2, "a": 1}, tmp_path / "2")
    assert c1 == "json" and d1 == d2


def test_commit_is_atomic_and_idempotent(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    staged = store.staging_dir("r1") / "x.1.out"
    digest, _, _ = encode({"v": 1}, staged)
    final = store.commit(staged, digest)
    assert final == store.path(digest) and not staged.exists() and store.verify(digest)
    again = store.staging_dir("r1") / "x.2.out"
    encode({"v": 1}, again)
    store.commit(again, digest)  # same content twice: one object, staging cleaned
    assert not again.exists()
    assert len(list(store.objects.rglob("*"))) == 2  # one fan-out dir, one object
    final.write_bytes(b"tampered")
    assert not store.verify(digest)
    store.clear_staging("r1")
    assert not (store.staging / "r1").exists()


def test_file_outputs_are_copied_from_the_step_staging(tmp_path: Path) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(b"weights" * 100)
    _, codec, size = encode(src, tmp_path / "out")
    assert codec == "file" and size == 700
    assert decode(tmp_path / "out", codec) == tmp_path / "out"


def test_ledger_records_runs_steps_attempts(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as led:
        led.create_run("r1", "p", "key", {"a": 1}, ["s1", "s2"], code_version="abc",
                       interval=("2026-01-01T00:00:00+00:00", "2026-01-02T00:00:00+00:00"))
        led.mark_run_started("r1")
        led.start_attempt("r1", "s1", 1, 123, {})
        led.end_attempt("r1", "s1", 1, "worker_lost", "WorkerLost", "killed")
        led.start_attempt("r1", "s1", 2, 124, {})
        led.commit_step("r1", "s1", 2, "ab" * 32, "json", 10)
        led.record_event("r1", 1.0, "fault_injected", "s1", 1, {"fault": "kill"})
        led.finish_run("r1", "succeeded")
        run = led.get_run("r1")
        assert run.status == "succeeded" and run.params == {"a": 1}
        assert run.interval_start == "2026-01-01T00:00:00+00:00"
        assert led.get_run("r") == run  # unique prefix
        assert [a["status"] for a in led.attempts("r1", "s1")] == ["worker_lost", "succeeded"]
        assert led.steps("r1")[0]["output_hash"] == "ab" * 32
        assert led.events("r1")[0]["details"] == {"fault": "kill"}
        assert led.latest_for_key("key") == run
        with pytest.raises(LedgerError):  # one commit per step, ever
            led.commit_step("r1", "s1", 3, "cd" * 32, "json", 10)
        with pytest.raises(LedgerError, match="no run 'zzz'"):
            led.get_run("zzz")
        mode = led.db.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"


def test_corrupt_ledger_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "ledger.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LedgerError, match="cannot open the run ledger"):
        Ledger(bad)


def test_event_roundtrip_and_bus_isolation() -> None:
    import pickle

    from reliability import Event, EventBus, EventKind

    ev = Event(EventKind.STEP_FAILED, "p", "r", step="s", details={"x": [1]})
    assert pickle.loads(pickle.dumps(ev)) == ev
    assert json.loads(json.dumps(ev.to_dict()))["kind"] == "step_failed"
    bus = EventBus()
    seen: list[EventKind] = []

    def broken(e: Event) -> None:
        raise RuntimeError("subscriber bug")

    bus.subscribe(broken)
    unsub = bus.subscribe(lambda e: seen.append(e.kind), kinds={EventKind.STEP_FAILED})
    bus.publish(ev)
    bus.publish(Event(EventKind.RUN_STARTED, "p", "r"))
    assert seen == [EventKind.STEP_FAILED]
    unsub()
    bus.publish(ev)
    assert seen == [EventKind.STEP_FAILED] and bus.subscriber_count == 1
