"""Edge cases of the artifact codecs and the ledger, without worker processes."""

from __future__ import annotations

import enum
import json
import math
import threading
from pathlib import Path

import pytest

from reliability.errors import LedgerError
from reliability.runner import Ledger
from reliability.runner.store import decode, encode


class Level(enum.IntEnum):
    LOW = 1


class Colour(enum.StrEnum):
    RED = "red"


@pytest.mark.parametrize("value", [Level.LOW, {"k": Colour.RED}, {Colour.RED: 1},
                                   [True, Level.LOW]])
def test_subclasses_of_json_types_keep_their_type(tmp_path: Path, value: object) -> None:
    _, codec, _ = encode(value, tmp_path / "o")
    back = decode(tmp_path / "o", codec)
    assert back == value
    assert repr(back) == repr(value)  # an IntEnum does not come back as a plain int


@pytest.mark.parametrize("value", [math.nan, {"x": [1.0, math.inf]}, -math.inf])
def test_non_finite_floats_never_make_invalid_json(tmp_path: Path, value: object) -> None:
    d1, codec, _ = encode(value, tmp_path / "a")
    d2, _, _ = encode(value, tmp_path / "b")
    assert d1 == d2  # stable hash
    if codec == "json":  # whatever is stored as json must be strict json
        def reject(token: str) -> None:
            raise ValueError(token)

        json.loads((tmp_path / "a").read_bytes(), parse_constant=reject)
    assert repr(decode(tmp_path / "a", codec)) == repr(value)


def test_attempt_numbers_are_never_reused(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as led:
        led.create_run("r1", "p", "key", {}, ["s1"])
        led.start_attempt("r1", "s1", 1, 100, {})
        led.end_attempt("r1", "s1", 1, "failed", "Boom", "first")
        with pytest.raises(LedgerError):
            led.start_attempt("r1", "s1", 1, 101, {})
        (row,) = led.attempts("r1", "s1")
        assert (row["status"], row["worker_pid"], row["error"]) == ("failed", 100, "first")


def test_an_identical_commit_is_idempotent(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as led:
        led.create_run("r1", "p", "key", {}, ["s1"])
        led.start_attempt("r1", "s1", 1, 100, {})
        led.commit_step("r1", "s1", 1, "ab" * 32, "json", 3)
        led.start_attempt("r1", "s1", 2, 100, {})
        led.commit_step("r1", "s1", 2, "ab" * 32, "json", 3)  # the same bytes again
        assert [c["output_hash"] for c in led.commits("r1")] == ["ab" * 32]
        assert [a["status"] for a in led.attempts("r1", "s1")] == ["succeeded", "succeeded"]


def test_events_from_another_thread_are_not_swallowed_by_a_rolled_back_tx(
        tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as led:
        led.create_run("r1", "p", "key", {}, ["s1"])
        writer = threading.Thread(target=led.record_event,
                                  args=("r1", 1.0, "sla_breached", None, None, {"sla": "x"}))

        def failing_tx() -> None:
            with led.tx() as db:
                db.execute("UPDATE runs SET status='running' WHERE run_id='r1'")
                writer.start()  # e.g. the SLA monitor's timer thread publishing a breach
                writer.join(0.3)
                raise RuntimeError("the runner's transaction fails")

        with pytest.raises(RuntimeError):
            failing_tx()
        writer.join(5)
        assert not writer.is_alive()
        assert [e["kind"] for e in led.events("r1")] == ["sla_breached"]
        assert led.get_run("r1").status == "pending"
        assert not led.db.in_transaction


def test_a_failed_commit_does_not_leave_the_transaction_open(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as led:
        def orphan_step() -> None:
            with led.tx() as db:
                db.execute("PRAGMA defer_foreign_keys=ON")  # the violation surfaces at COMMIT
                db.execute("INSERT INTO steps (run_id, step, status) VALUES ('nope','s','x')")

        with pytest.raises(LedgerError):
            orphan_step()
        assert not led.db.in_transaction
        led.create_run("r1", "p", "key", {}, ["s1"])  # the ledger still works
        assert led.get_run("r1").status == "pending"
