"""The ledger never lets a run run twice, and its failures are clear and resumable."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from pydantic import BaseModel

from reliability import Pipeline, Runner
from reliability.cli.main import main
from reliability.errors import LedgerError, RunError, StorageError
from reliability.runner import Ledger
from reliability.runs import RunStatus, Trigger


def test_two_claims_of_one_run_key_at_the_same_moment_create_one_run(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    Ledger(db).close()
    for trial in range(40):
        key = f"key-{trial}"
        barrier = threading.Barrier(2)
        created: list[bool] = []

        def claim(i: int, key: str = key, barrier: threading.Barrier = barrier,
                  created: list[bool] = created) -> None:
            with Ledger(db) as led:
                barrier.wait()
                _, new = led.open_run(f"run-{key}-{i}", "p", key, {}, ["a"])
                created.append(new)

        threads = [threading.Thread(target=claim, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(created) == [False, True], trial
    with Ledger(db) as led:
        assert len(led.list_runs(limit=1000)) == 40


slow = Pipeline("slow")


@slow.step
def wait_a_bit() -> int:
    import time

    time.sleep(1.5)
    return 1


def test_a_second_runner_of_the_same_run_is_refused_while_the_first_runs(home: Path) -> None:
    first = Runner(slow, home=home, workers=1)
    second = Runner(slow, home=home, workers=1)
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(first.run()))
    t.start()
    try:
        import time

        deadline = time.monotonic() + 30
        while not first.ledger.list_runs() or first.ledger.list_runs()[0].status != "running":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with pytest.raises(RunError, match="being run by live process"):
            second.run()
    finally:
        t.join()
    with Ledger(home / "ledger.db") as led:
        assert len(led.list_runs()) == 1 and led.list_runs()[0].status == "succeeded"


def test_sqlite_errors_never_reach_the_caller(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.db") as led:
        led.create_run("r1", "p", "k1", {}, ["a"])
        with pytest.raises(LedgerError):  # not sqlite3.IntegrityError
            led.create_run("r1", "p", "k2", {}, ["a"])
        led.start_attempt("r1", "a", 1, 1, {})
        with pytest.raises(LedgerError):
            led.start_attempt("r1", "a", 1, 1, {})


class NoteParams(BaseModel):
    note: str = ""


def test_a_full_disk_is_a_clear_error_and_the_run_stays_resumable(home: Path) -> None:
    pipe = Pipeline("full", params=NoteParams)

    @pipe.step
    def big() -> bytes:
        return b"x" * 10

    runner = Runner(pipe, home=home, workers=1)
    pages = runner.ledger.db.execute("PRAGMA page_count").fetchone()[0]
    runner.ledger.db.execute(f"PRAGMA max_page_count={pages}")  # the ledger's disk is full
    try:
        with pytest.raises(StorageError, match="disk is full") as err:
            runner.run({"note": "n" * 200_000})  # the run's record needs new pages
        assert "Fix:" in str(err.value) and not isinstance(err.value, sqlite3.Error)
    finally:
        runner.close()
        runner.ledger.close()
    again = Runner(pipe, home=home, workers=1)  # space again: the same command works
    try:
        res = again.run({"note": "n" * 200_000})
        assert res.ok
    finally:
        again.close()
        again.ledger.close()


def test_a_read_only_ledger_reads_and_refuses_writes_clearly(home: Path,
                                                            capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    pipe = Pipeline("ro")

    @pipe.step
    def one() -> int:
        return 1

    runner = Runner(pipe, home=home, workers=1)
    res = runner.run(trigger=Trigger.SCHEDULE, source="daily")
    runner.close()
    runner.ledger.close()
    with Ledger(home / "ledger.db", readonly=True) as led:
        (rec,) = led.list_runs()
        assert rec.status is RunStatus.SUCCEEDED and rec.trigger is Trigger.SCHEDULE
        assert rec.trigger_source == "daily" and rec.trigger.production is not False
        with pytest.raises(StorageError, match="cannot be written"):
            led.finish_run(res.run_id, RunStatus.FAILED)
    assert main(["runs", "list", "--home", str(home)]) == 0
    assert res.run_id in capsys.readouterr().out


class WalParams(BaseModel):
    ledger: str = ""
    seen: str = ""


wal = Pipeline("wal", params=WalParams)


@wal.step
def first(params: WalParams) -> int:
    import time

    time.sleep(0.7)
    return 1


@wal.step
def second(params: WalParams, first: int) -> int:
    import time

    time.sleep(0.7)
    return first + 1


@wal.step
def third(params: WalParams, second: int) -> int:
    import os

    Path(params.seen).write_text(str(os.path.getsize(params.ledger)))
    return second + 1


def test_history_reaches_the_ledger_file_while_the_run_goes(home: Path, tmp_path: Path) -> None:
    """The WAL is checkpointed as the run goes: ledger.db itself holds the run's history
    before the run ends, not only the write-ahead log."""
    seen = tmp_path / "seen"
    runner = Runner(wal, home=home, workers=1)
    try:
        res = runner.run({"ledger": str(home / "ledger.db"), "seen": str(seen)})
    finally:
        runner.close()
        runner.ledger.close()
    assert res.ok, res.failed
    assert int(seen.read_text()) > 4096  # an empty ledger's schema alone is smaller
