"""Scheduling state in the run ledger: one row per (pipeline, data interval), and backfills.

Tables live in the runner's SQLite file (``home/ledger.db``) next to ``runs``:

* ``schedule_runs`` -- ``UNIQUE(pipeline, interval_start, interval_end)``. A run of an
  interval starts only by *claiming* its row inside one ``BEGIN IMMEDIATE`` transaction, so two
  triggers of the same interval, in one process or many, never start two runs; the loser gets
  a :class:`Claim` saying why nothing happened. A claim held by a dead process is taken over
  and its run resumed.
* ``backfills`` / ``backfill_items`` -- a backfill's plan and per-interval progress, so a
  killed backfill continues where it stopped.

Interval bounds are stored as fixed-width UTC text (:func:`utc_key`), which sorts by time.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any

from reliability._proc import start_token
from reliability._record import record
from reliability.errors import DefinitionError
from reliability.pipeline import DataInterval
from reliability.runner.ledger import Ledger
from reliability.runs import ledger_path, new_run_id
from reliability.schedule.intervals import utc_key

__all__ = ["Claim", "Reprocess", "ScheduleStore", "SlotRow"]

#: Process-wide set of live claim owners, so threads of this process know each other.
_LIVE: set[str] = set()
_LIVE_LOCK = threading.Lock()


class Reprocess(StrEnum):
    """Which intervals that already have a final run are run again."""

    NONE = "none"      # only intervals never run (and interrupted ones, which resume)
    FAILED = "failed"  # also failed ones
    ALL = "all"        # also succeeded ones

    @classmethod
    def parse(cls, value: str | Reprocess) -> Reprocess:
        try:
            return cls(value)
        except ValueError:
            raise DefinitionError(
                f"reprocess={value!r} is not a reprocess policy. "
                f"Fix: use one of {[m.value for m in cls]}") from None


@record(frozen=True, slots=True)
class SlotRow:
    """One ``schedule_runs`` row."""

    pipeline: str
    interval_start: str
    interval_end: str
    schedule: str | None
    run_id: str | None
    status: str
    trigger: str | None
    owner: str | None
    claims: int
    error: str | None


@record(frozen=True, slots=True)
class Claim:
    """Result of asking to run an interval. ``acquired`` False means: nothing to do."""

    acquired: bool
    reason: str
    run_id: str | None = None
    resume: bool = False  # the run exists and was interrupted: resume it, do not start anew


def _owner_alive(owner: str | None) -> bool:
    if not owner:
        return False
    with _LIVE_LOCK:
        if owner in _LIVE:
            return True
    head, _, token = owner.partition("@")
    host, _, rest = head.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname():
        return True  # cannot tell from here; never steal another host's claim
    if not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False  # this process, but not a live claimer: left over from a closed store
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    # a live pid that started at another time is a stranger reusing the number
    current = start_token(int(pid_text)) if token else None
    return current is None or current == token


def _interval_run_id(pipeline: str, interval: DataInterval) -> str:
    return new_run_id(pipeline, at=interval.start)


class ScheduleStore:
    """Scheduling tables in a ledger file. Thread-safe; one per process is plenty."""

    def __init__(self, ledger: Ledger | str | Path) -> None:
        self._own_ledger = not isinstance(ledger, Ledger)
        self.ledger = ledger if isinstance(ledger, Ledger) else Ledger(Path(ledger))
        # host:pid:nonce@start-token -- the token tells a reused pid from the claimer
        self.owner = (f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
                      f"@{start_token() or ''}")
        self._lock = threading.RLock()
        with _LIVE_LOCK:
            _LIVE.add(self.owner)

    @classmethod
    def at_home(cls, home: str | Path) -> ScheduleStore:
        return cls(ledger_path(home))

    def close(self) -> None:
        with _LIVE_LOCK:
            _LIVE.discard(self.owner)
        if self._own_ledger:
            self.ledger.close()

    @contextmanager
    def tx(self) -> Iterator[Any]:
        with self._lock, self.ledger.tx() as db:
            yield db

    def query(self, sql: str, args: Iterable[Any] = ()) -> list[Any]:
        with self._lock:
            return list(self.ledger.db.execute(sql, tuple(args)))

    # -- slots -------------------------------------------------------------------------
    def get(self, pipeline: str, interval: DataInterval) -> SlotRow | None:
        rows = self.query(
            "SELECT pipeline, interval_start, interval_end, schedule, run_id, status, trigger,"
            " owner, claims, error FROM schedule_runs WHERE pipeline=? AND interval_start=?"
            " AND interval_end=?", (pipeline, utc_key(interval.start), utc_key(interval.end)))
        return SlotRow(*rows[0]) if rows else None

    def rows_between(self, pipeline: str, start: dt.datetime, end: dt.datetime
                     ) -> dict[tuple[str, str], SlotRow]:
        """Rows of intervals starting in ``[start, end)``, keyed by (start, end) text."""
        rows = self.query(
            "SELECT pipeline, interval_start, interval_end, schedule, run_id, status, trigger,"
            " owner, claims, error FROM schedule_runs WHERE pipeline=? AND interval_start>=?"
            " AND interval_start<?", (pipeline, utc_key(start), utc_key(end)))
        return {(r[1], r[2]): SlotRow(*r) for r in rows}

    def earliest_start(self, pipeline: str, schedule: str | None = None
                       ) -> dt.datetime | None:
        """Start of the oldest interval recorded for ``pipeline`` (by ``schedule`` if given)."""
        sql = "SELECT MIN(interval_start) FROM schedule_runs WHERE pipeline=?"
        args: tuple[str, ...] = (pipeline,)
        if schedule is not None:
            sql, args = sql + " AND schedule=?", (pipeline, schedule)
        rows = self.query(sql, args)
        return dt.datetime.fromisoformat(rows[0][0]) if rows and rows[0][0] else None

    def is_live(self, row: SlotRow) -> bool:
        return row.status == "running" and _owner_alive(row.owner)

    def claim(self, pipeline: str, interval: DataInterval, *, schedule: str | None = None,
              trigger: str | None = None, reprocess: Reprocess = Reprocess.NONE) -> Claim:
        """Atomically take the right to run ``interval`` of ``pipeline``, or say why not."""
        key = (pipeline, utc_key(interval.start), utc_key(interval.end))
        now = time.time()
        with self.tx() as db:
            row = db.execute("SELECT run_id, status, owner FROM schedule_runs WHERE"
                             " pipeline=? AND interval_start=? AND interval_end=?",
                             key).fetchone()
            decision = self._decide(pipeline, interval, row, reprocess)
            if not decision.acquired:
                return decision
            if row is None:
                db.execute(
                    "INSERT INTO schedule_runs (pipeline, interval_start, interval_end,"
                    " schedule, run_id, status, trigger, owner, claims, created_at,"
                    " updated_at) VALUES (?,?,?,?,?,'running',?,?,1,?,?)",
                    (*key, schedule, decision.run_id, trigger, self.owner, now, now))
            else:
                db.execute(
                    "UPDATE schedule_runs SET run_id=?, status='running', trigger=?, owner=?,"
                    " claims=claims+1, updated_at=?, error=NULL, schedule=COALESCE(?, schedule)"
                    " WHERE pipeline=? AND interval_start=? AND interval_end=?",
                    (decision.run_id, trigger, self.owner, now, schedule, *key))
            return decision

    def _decide(self, pipeline: str, interval: DataInterval, row: Any,
                reprocess: Reprocess) -> Claim:
        what = f"{pipeline} interval {interval.key()}"
        if row is None or row["status"] == "skipped":
            return Claim(True, "new interval", _interval_run_id(pipeline, interval))
        run_id, status, owner = row["run_id"], row["status"], row["owner"]
        if status == "running" and _owner_alive(owner):
            return Claim(False, f"duplicate trigger ignored: {what} is already running as "
                                f"run {run_id}", run_id)
        if status in ("running", "cancelled"):
            why = "whose process died" if status == "running" else "which was cancelled"
            return Claim(True, f"resuming run {run_id}, {why}", run_id, True)
        if status == "succeeded" and reprocess is not Reprocess.ALL:
            return Claim(False, f"duplicate trigger ignored: {what} already succeeded as run "
                                f"{run_id}. Fix: reprocess=all to run it again", run_id)
        if status == "failed" and reprocess is Reprocess.NONE:
            return Claim(False, f"{what} already failed as run {run_id}; not rerun. Fix: "
                                "reprocess=failed to run it again", run_id)
        return Claim(True, f"reprocessing ({status} before)", _interval_run_id(pipeline, interval))

    def finish(self, pipeline: str, interval: DataInterval, status: str, *,
               run_id: str | None = None, error: str | None = None) -> None:
        """Record the end of this store's claim (no-op if another owner took it over)."""
        with self.tx() as db:
            db.execute(
                "UPDATE schedule_runs SET status=?, run_id=COALESCE(?, run_id), error=?,"
                " updated_at=? WHERE pipeline=? AND interval_start=? AND interval_end=?"
                " AND owner=?", (status, run_id, error, time.time(), pipeline,
                                 utc_key(interval.start), utc_key(interval.end), self.owner))

    def mark_skipped(self, pipeline: str, intervals: Iterable[DataInterval], *,
                     schedule: str | None, reason: str) -> int:
        """Record intervals a catch-up policy chose not to run (a backfill can run them)."""
        now = time.time()
        rows = [(pipeline, utc_key(iv.start), utc_key(iv.end), schedule, reason, now, now)
                for iv in intervals]
        with self.tx() as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO schedule_runs (pipeline, interval_start, interval_end,"
                " schedule, status, error, created_at, updated_at)"
                " VALUES (?,?,?,?,'skipped',?,?,?)", rows)
            return int(db.total_changes - before)

    # -- backfills ---------------------------------------------------------------------
    def backfill_count(self, fingerprint: str) -> int:
        rows = self.query("SELECT COUNT(*) FROM backfills WHERE fingerprint=?", (fingerprint,))
        return int(rows[0][0])

    def open_backfill(self, fingerprint: str) -> tuple[str, str] | None:
        """The newest unfinished backfill with this fingerprint: (id, status)."""
        rows = self.query("SELECT backfill_id, status FROM backfills WHERE fingerprint=? AND"
                          " status NOT IN ('completed') ORDER BY created_at DESC LIMIT 1",
                          (fingerprint,))
        return (rows[0][0], rows[0][1]) if rows else None

    def create_backfill(self, backfill_id: str, fingerprint: str, pipeline: str,
                        rng: DataInterval, reprocess: str, direction: str,
                        items: list[tuple[DataInterval, str, str | None]]) -> None:
        """Record a planned backfill: items are (interval, status, note) in run order."""
        now = time.time()
        with self.tx() as db:
            db.execute("INSERT INTO backfills VALUES (?,?,?,?,?,?,?,'running',?,?,?)",
                       (backfill_id, fingerprint, pipeline, utc_key(rng.start),
                        utc_key(rng.end), reprocess, direction, len(items), now, now))
            db.executemany(
                "INSERT INTO backfill_items (backfill_id, seq, interval_start, interval_end,"
                " status, note) VALUES (?,?,?,?,?,?)",
                [(backfill_id, i, utc_key(iv.start), utc_key(iv.end), st, note)
                 for i, (iv, st, note) in enumerate(items)])

    def backfill_items(self, backfill_id: str) -> list[tuple[int, str, str, str, str | None]]:
        """(seq, start, end, status, run_id) in run order."""
        return [tuple(r) for r in self.query(
            "SELECT seq, interval_start, interval_end, status, run_id FROM backfill_items"
            " WHERE backfill_id=? ORDER BY seq", (backfill_id,))]

    def set_item(self, backfill_id: str, seq: int, status: str, run_id: str | None = None,
                 note: str | None = None) -> None:
        with self.tx() as db:
            db.execute("UPDATE backfill_items SET status=?, run_id=COALESCE(?, run_id),"
                       " note=COALESCE(?, note) WHERE backfill_id=? AND seq=?",
                       (status, run_id, note, backfill_id, seq))

    def set_backfill(self, backfill_id: str, status: str) -> None:
        with self.tx() as db:
            db.execute("UPDATE backfills SET status=?, updated_at=? WHERE backfill_id=?",
                       (status, time.time(), backfill_id))
