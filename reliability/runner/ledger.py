"""The run ledger: runs, steps, attempts and events in SQLite (WAL).

It is the audit trail (what ran, when, on which worker, with which inputs and outputs) and
the resume point: a run whose runner died is finished from here without redoing committed
steps. One writer (the runner process); readers (CLI, dashboards) can read concurrently.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reliability._proc import holds, hostname, start_token
from reliability._record import record
from reliability.errors import LedgerError, ReliabilityError, StorageError
from reliability.runs import (
    FINAL_RUN_STATES,
    RunStatus,
    Trigger,
    default_environment,
)

__all__ = ["FINAL_RUN_STATES", "AlertRecord", "Ledger", "LedgerView", "RunRecord"]

if TYPE_CHECKING:
    from reliability.events import Event

SCHEMA_VERSION = 5  # 4: indexes for the latest events of a kind and the last good run;
#                    5: the scheduler's tables are the ledger's
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    pipeline TEXT NOT NULL,
    run_key TEXT NOT NULL,
    status TEXT NOT NULL,
    params TEXT NOT NULL,
    code_version TEXT,
    interval_start TEXT,
    interval_end TEXT,
    trigger TEXT,
    trigger_source TEXT,
    environment TEXT,
    runner_pid INTEGER,
    host TEXT,
    runner_start TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS runs_key ON runs(run_key, created_at);
CREATE INDEX IF NOT EXISTS runs_pipeline ON runs(pipeline, created_at);
CREATE INDEX IF NOT EXISTS runs_outcome ON runs(pipeline, status, ended_at);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    step TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    input_hashes TEXT,
    output_hash TEXT,
    output_codec TEXT,
    output_size INTEGER,
    started_at REAL,
    ended_at REAL,
    error TEXT,
    PRIMARY KEY (run_id, step)
);
CREATE TABLE IF NOT EXISTS attempts (
    run_id TEXT NOT NULL,
    step TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    worker_pid INTEGER,
    started_at REAL NOT NULL,
    ended_at REAL,
    error_type TEXT,
    error TEXT,
    traceback TEXT,
    PRIMARY KEY (run_id, step, attempt)
);
CREATE TABLE IF NOT EXISTS commits (
    run_id TEXT NOT NULL,
    step TEXT NOT NULL,
    output_hash TEXT NOT NULL,
    committed_at REAL NOT NULL,
    UNIQUE (run_id, step)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    time REAL NOT NULL,
    kind TEXT NOT NULL,
    step TEXT,
    attempt INTEGER,
    details TEXT
);
CREATE INDEX IF NOT EXISTS events_run ON events(run_id, id);
CREATE INDEX IF NOT EXISTS events_kind ON events(kind, id);
-- the scheduler's claims and backfills (reliability.schedule.state)
CREATE TABLE IF NOT EXISTS schedule_runs (
    pipeline TEXT NOT NULL,
    interval_start TEXT NOT NULL,
    interval_end TEXT NOT NULL,
    schedule TEXT,
    run_id TEXT,
    status TEXT NOT NULL,
    trigger TEXT,
    owner TEXT,
    claims INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    error TEXT,
    UNIQUE (pipeline, interval_start, interval_end)
);
CREATE TABLE IF NOT EXISTS backfills (
    backfill_id TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    range_start TEXT NOT NULL,
    range_end TEXT NOT NULL,
    reprocess TEXT NOT NULL,
    direction TEXT NOT NULL,
    status TEXT NOT NULL,
    total INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS backfills_fp ON backfills(fingerprint, created_at);
CREATE TABLE IF NOT EXISTS backfill_items (
    backfill_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    interval_start TEXT NOT NULL,
    interval_end TEXT NOT NULL,
    status TEXT NOT NULL,
    run_id TEXT,
    note TEXT,
    PRIMARY KEY (backfill_id, seq)
);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    alertname TEXT NOT NULL,
    status TEXT NOT NULL,
    labels TEXT NOT NULL,
    annotations TEXT NOT NULL,
    ends_at TEXT,
    received_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    run_id TEXT,
    runbook TEXT,
    UNIQUE (fingerprint, starts_at)
);
"""
_OPEN_KEY_INDEX = """CREATE UNIQUE INDEX IF NOT EXISTS runs_open_key ON runs(run_key)
    WHERE status IN ('pending', 'running')"""


@record(frozen=True, slots=True)
class RunRecord:
    run_id: str
    pipeline: str
    run_key: str
    status: RunStatus
    params: dict[str, Any]
    code_version: str | None
    interval_start: str | None
    interval_end: str | None
    trigger: Trigger
    trigger_source: str | None
    environment: str | None
    runner_pid: int | None
    host: str | None
    runner_start: str | None
    created_at: float
    started_at: float | None
    ended_at: float | None
    error: str | None

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at

    @property
    def production(self) -> bool:
        """Counts toward SLOs, budgets, alerts and "last good run" (not chaos/explore)."""
        return self.trigger.production


@record(frozen=True, slots=True)
class AlertRecord:
    """One alert received from Alertmanager: a firing episode (fingerprint, start time),
    the run whose failure fired it, and its runbook as rendered when it arrived."""

    id: int
    fingerprint: str
    starts_at: str
    alertname: str
    status: str                 # "firing" or "resolved"
    labels: dict[str, str]
    annotations: dict[str, str]
    ends_at: str | None
    received_at: float
    updated_at: float
    run_id: str | None
    runbook: str | None         # rendered HTML


# Triggers of experiment runs (chaos and explore, and their baselines): they share the ledger
# but never count as production history. "explore-baseline" is the older spelling.
EXPERIMENT_TRIGGERS = (*(t.value for t in Trigger if not t.production), "explore-baseline")


class Ledger:
    """SQLite-backed ledger. Use one instance per process.

    The connection is shared by the run loop and threads that publish events (SLA timers,
    chaos controllers); a lock serializes writes, so a statement from another thread never
    lands inside (and is never rolled back with) the run loop's open transaction.

    ``readonly=True`` opens an existing ledger for reading only: it works on a read-only
    home (``runs list`` and ``runs show`` on a mounted backup). Every SQLite error is
    translated: a full disk or an unwritable file is a :class:`StorageError` naming the fix,
    a damaged file a :class:`LedgerError`; nothing from ``sqlite3`` reaches a caller.
    """

    CHECKPOINT_EVERY = 1.0  # seconds between passive WAL checkpoints while a run writes

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.RLock()
        self._last_checkpoint = time.monotonic()
        if self.path.is_dir():
            raise LedgerError(f"{self.path}: is a directory, not a run ledger. Fix: move it "
                              "aside, or point --home at another directory")
        if readonly:
            self.db = _open_readonly(self.path)
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"cannot create the runner home ({exc.strerror or exc})",
                path=str(self.path.parent),
                fix="point --home (or RELIABILITY_HOME) at a writable directory") from None
        try:
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                      check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._translate(exc, "open") from None
        try:
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            if self._schema_version() != SCHEMA_VERSION:
                self.db.executescript(_SCHEMA)
                self._migrate()
        except LedgerError:
            self.db.close()
            raise
        except sqlite3.Error as exc:
            self.db.close()
            raise self._translate(exc, "open") from None

    def _translate(self, exc: sqlite3.Error, doing: str) -> ReliabilityError:
        """The one mapping from SQLite's errors to ours."""
        msg = str(exc)
        low = msg.lower()
        if "disk is full" in low or "database or disk is full" in low:
            return StorageError(
                f"the disk is full ({doing} the run ledger)", path=str(self.path),
                fix=f"free space on {self.path.parent}; an interrupted run is resumable with "
                    "`reliability resume RUN`")
        if "readonly" in low or "read-only" in low or "unable to open" in low or (
                isinstance(exc, sqlite3.OperationalError) and "permission" in low):
            return StorageError(
                f"the run ledger cannot be written ({msg})", path=str(self.path),
                fix=f"make {self.path.parent} writable for this user, or point --home (or "
                    "RELIABILITY_HOME) at a writable directory; read-only commands (runs "
                    "list, runs show) work as they are")
        if isinstance(exc, sqlite3.IntegrityError):
            return LedgerError(
                f"{self.path}: the run ledger refused a write that would break its integrity "
                f"({msg}). Fix: nothing to repair; check that no other process writes this "
                "run under the same id")
        if "locked" in low or "busy" in low:
            return LedgerError(
                f"{self.path}: the run ledger stayed locked by another process ({msg}). "
                "Fix: retry; if it persists, look for a stuck reliability process")
        return LedgerError(
            f"{self.path}: cannot {doing} the run ledger ({type(exc).__name__}: {msg}). "
            "Fix: point --home at a writable directory, or move the damaged file aside")

    @contextmanager
    def _guard(self, doing: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise self._translate(exc, doing) from None

    def _migrate(self) -> None:
        """Bring a ledger written by an older version up to :data:`SCHEMA_VERSION`."""
        with self.tx() as db:
            version = self._schema_version() or SCHEMA_VERSION  # None: a new ledger
            if version > SCHEMA_VERSION:
                raise LedgerError(
                    f"{self.path}: written by a newer pipeline-reliability (ledger schema "
                    f"{version}, this one knows {SCHEMA_VERSION}). Fix: upgrade "
                    "pipeline-reliability, or point --home at another directory")
            columns = {r[1] for r in db.execute("PRAGMA table_info(runs)")}
            if "runner_start" not in columns:  # schema 1
                db.execute("ALTER TABLE runs ADD COLUMN runner_start TEXT")
            if "environment" not in columns:  # schema 2: triggers were strings
                db.execute("ALTER TABLE runs ADD COLUMN trigger_source TEXT")
                db.execute("ALTER TABLE runs ADD COLUMN environment TEXT")
                for run_id, trig in db.execute(
                        "SELECT run_id, trigger FROM runs").fetchall():
                    kind = Trigger.parse(trig) if trig else Trigger.MANUAL
                    source = trig.split(":", 1)[1] if trig and ":" in trig else None
                    db.execute("UPDATE runs SET trigger=?, trigger_source=? WHERE run_id=?",
                               (kind.value, source, run_id))
                # two open runs of one key (the race this index now prevents): keep the
                # newest open, mark the older ones cancelled so they stay resumable by id
                db.execute(
                    "UPDATE runs SET status='cancelled', error='superseded by a newer run of "
                    "the same key' WHERE status IN ('pending','running') AND EXISTS (SELECT 1"
                    " FROM runs r2 WHERE r2.run_key=runs.run_key AND r2.status IN"
                    " ('pending','running') AND r2.created_at > runs.created_at)")
            db.execute(_OPEN_KEY_INDEX)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                       (str(SCHEMA_VERSION),))

    def _schema_version(self) -> int | None:
        try:
            row = self.db.execute(
                "SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return None
            raise
        if row is None:
            return None
        try:
            return int(row[0])
        except ValueError:
            raise LedgerError(
                f"{self.path}: meta.schema_version is {row[0]!r}, not a number. Fix: move the "
                "damaged file aside, or point --home at another directory") from None

    def close(self) -> None:
        with self._lock:
            if not self.readonly:
                with contextlib.suppress(sqlite3.Error):
                    self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self.db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._guard("write"):
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
                self.db.execute("COMMIT")  # may fail too (deferred constraints, disk full)
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
        self._maybe_checkpoint()

    def _write(self, sql: str, args: Sequence[Any]) -> sqlite3.Cursor:
        with self._lock, self._guard("write"):
            cur = self.db.execute(sql, args)
        self._maybe_checkpoint()
        return cur

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock, self._guard("read"):
            return self.db.execute(sql, args).fetchall()

    def _maybe_checkpoint(self, force: bool = False) -> None:
        """Move committed pages from the WAL into ``ledger.db`` as the run goes (passive:
        never waits for readers), so history does not live only in the WAL."""
        now = time.monotonic()
        if not force and now - self._last_checkpoint < self.CHECKPOINT_EVERY:
            return
        self._last_checkpoint = now
        with self._lock, contextlib.suppress(sqlite3.Error):
            self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    # -- runs -------------------------------------------------------------------------
    def create_run(self, run_id: str, pipeline: str, run_key: str, params: Mapping[str, Any],
                   steps: Sequence[str], *, code_version: str | None = None,
                   interval: tuple[str, str] | None = None,
                   trigger: Trigger | str | None = None, trigger_source: str | None = None,
                   environment: str | None = None) -> None:
        """Record a new run (pending). Raises :class:`LedgerError` if another open run has
        the same key: use :meth:`open_run` to get it instead."""
        rec, created = self.open_run(
            run_id, pipeline, run_key, params, steps, code_version=code_version,
            interval=interval, trigger=trigger, trigger_source=trigger_source,
            environment=environment, reuse_open=False)
        if not created:
            raise LedgerError(f"run {rec.run_id} with the same key is still open. Fix: "
                              f"resume it with `reliability resume {rec.run_id}`")

    def open_run(self, run_id: str, pipeline: str, run_key: str, params: Mapping[str, Any],
                 steps: Sequence[str], *, code_version: str | None = None,
                 interval: tuple[str, str] | None = None,
                 trigger: Trigger | str | None = None, trigger_source: str | None = None,
                 environment: str | None = None, reuse_open: bool = True,
                 resumable: bool = True) -> tuple[RunRecord, bool]:
        """Atomically find or create the run of ``run_key``. Returns ``(run, created)``.

        In one write transaction: with ``reuse_open`` an open run of the key (pending or
        running) is returned, and, with ``resumable``, also the latest cancelled one; else a
        new run is inserted. An open run whose runner died is closed as cancelled first
        when a new run is wanted. A unique index on open run keys makes two concurrent
        callers agree: exactly one creates the run, the other gets it.
        """
        kind = Trigger.parse(trigger)
        now = time.time()
        with self.tx() as db:
            rows = db.execute(
                "SELECT * FROM runs WHERE run_key=? AND status IN ('pending','running',"
                "'cancelled') ORDER BY created_at DESC LIMIT 1", (run_key,)).fetchall()
            prev = _record(rows[0]) if rows else None
            if prev is not None and prev.status in (RunStatus.PENDING, RunStatus.RUNNING):
                if reuse_open:
                    return prev, False
                if prev.status is RunStatus.RUNNING and holds(
                        prev.runner_pid, prev.host, prev.runner_start):
                    from reliability.errors import RunError

                    raise RunError(f"run {prev.run_id} of the same pipeline, parameters and "
                                   f"interval is being run by live process {prev.runner_pid}."
                                   " Fix: wait for it, or stop it", run_id=prev.run_id)
                db.execute("UPDATE runs SET status='cancelled', error=? WHERE run_id=?",
                           ("superseded by a new run of the same key", prev.run_id))
            elif (prev is not None and reuse_open and resumable
                  and prev.status is RunStatus.CANCELLED):
                return prev, False
            db.execute(
                "INSERT INTO runs (run_id, pipeline, run_key, status, params, code_version,"
                " interval_start, interval_end, trigger, trigger_source, environment,"
                " runner_pid, host, runner_start, created_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (*_run_identity(run_id, pipeline, run_key, RunStatus.PENDING, params,
                                code_version, interval, kind, trigger_source, environment),
                 os.getpid(), hostname(), start_token(), now))
            db.executemany("INSERT INTO steps (run_id, step, status) VALUES (?,?,'pending')",
                           [(run_id, s) for s in steps])
            row = db.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return _record(row), True

    def claim_run(self, run_id: str) -> int | None:
        """Make this process the run's runner, unless a live runner holds it.

        Check and claim are one write transaction, so of two processes claiming at once
        exactly one wins. The recorded runner counts as live only if its pid runs with the
        start time recorded beside it (a reused pid does not block). Returns None when
        claimed, else the pid of the live holder.
        """
        with self.tx() as db:
            row = db.execute("SELECT status, runner_pid, host, runner_start FROM runs"
                             " WHERE run_id=?", (run_id,)).fetchone()
            if row is None:
                raise LedgerError(f"no run {run_id!r} in ledger {self.path}. Fix: list runs "
                                  "with `reliability runs list`")
            if row["status"] == "running" and holds(row["runner_pid"], row["host"],
                                                    row["runner_start"]):
                return int(row["runner_pid"])
            db.execute("UPDATE runs SET status='running', runner_pid=?, host=?, runner_start=?"
                       " WHERE run_id=?",
                       (os.getpid(), hostname(), start_token(), run_id))
        return None

    def mark_run_started(self, run_id: str) -> None:
        self._write(
            "UPDATE runs SET status='running', runner_pid=?, runner_start=?,"
            " started_at=COALESCE(started_at,?) WHERE run_id=?",
            (os.getpid(), start_token(), time.time(), run_id))

    def finish_run(self, run_id: str, status: RunStatus | str, error: str | None = None
                   ) -> None:
        self._write("UPDATE runs SET status=?, ended_at=?, error=? WHERE run_id=?",
                    (RunStatus(status).value, time.time(), error, run_id))
        self._maybe_checkpoint(force=True)

    def get_run(self, run_id: str) -> RunRecord:
        rows = self._read("SELECT * FROM runs WHERE run_id=?", (run_id,))
        row = rows[0] if rows else None
        if row is None:
            prefix = self._read(
                "SELECT * FROM runs WHERE run_id LIKE ? ESCAPE '\\' ORDER BY created_at DESC"
                " LIMIT 2", (_like_prefix(run_id),))
            if len(prefix) == 1:
                row = prefix[0]
            else:
                raise LedgerError(
                    f"no run {run_id!r} in ledger {self.path}. Fix: list runs with "
                    "`reliability runs list`")
        return _record(row)

    def latest_for_key(self, run_key: str) -> RunRecord | None:
        rows = self._read(
            "SELECT * FROM runs WHERE run_key=? ORDER BY created_at DESC LIMIT 1", (run_key,))
        return _record(rows[0]) if rows else None

    def list_runs(self, pipeline: str | None = None, limit: int = 20,
                  status: str | None = None) -> list[RunRecord]:
        q = "SELECT * FROM runs WHERE 1=1"
        args: list[Any] = []
        if pipeline:
            q += " AND pipeline=?"
            args.append(pipeline)
        if status:
            q += " AND status=?"
            args.append(status)
        q += " ORDER BY created_at DESC LIMIT ?"
        args.append(limit)
        return [_record(r) for r in self._read(q, args)]

    def last_good_run(self, pipeline: str, *, production_only: bool = True,
                      before: str | None = None) -> RunRecord | None:
        """The latest succeeded run of ``pipeline``, other than run ``before``.

        Chaos and explore runs (and their baselines) are skipped unless
        ``production_only=False``: a run made to be broken is no evidence of a good state.
        """
        row = self.db.execute(
            "SELECT * FROM runs WHERE pipeline=? AND status='succeeded' AND run_id != ?"
            " AND (trigger IS NULL OR trigger NOT IN (SELECT value FROM json_each(?)))"
            " ORDER BY ended_at DESC LIMIT 1",
            (pipeline, before or "",
             json.dumps(EXPERIMENT_TRIGGERS if production_only else []))).fetchone()
        return _record(row) if row else None

    # -- steps and attempts -----------------------------------------------------------
    def steps(self, run_id: str) -> list[dict[str, Any]]:
        rows = self._read("SELECT * FROM steps WHERE run_id=? ORDER BY rowid", (run_id,))
        return [dict(r) for r in rows]

    def attempts(self, run_id: str, step: str | None = None) -> list[dict[str, Any]]:
        q, args = "SELECT * FROM attempts WHERE run_id=?", [run_id]
        if step:
            q += " AND step=?"
            args.append(step)
        rows = self._read(q + " ORDER BY started_at, step, attempt", args)
        return [dict(r) for r in rows]

    def commits(self, run_id: str) -> list[dict[str, Any]]:
        rows = self._read("SELECT * FROM commits WHERE run_id=? ORDER BY rowid", (run_id,))
        return [dict(r) for r in rows]

    def start_attempt(self, run_id: str, step: str, attempt: int, worker_pid: int | None,
                      input_hashes: Mapping[str, str], *, queued: bool = False,
                      at: float | None = None) -> None:
        """An attempt starts (``queued``: the one :meth:`queue_attempt` recorded; ``at``:
        when it started, if that was before now)."""
        now = time.time() if at is None else at
        with self.tx() as db:
            if queued:
                db.execute(
                    "UPDATE attempts SET status='running', worker_pid=?, started_at=? WHERE"
                    " run_id=? AND step=? AND attempt=?",
                    (worker_pid, now, run_id, step, attempt))
            else:
                db.execute(
                    "INSERT INTO attempts (run_id, step, attempt, status, worker_pid,"
                    " started_at) VALUES (?,?,?,?,?,?)",
                    (run_id, step, attempt, "running", worker_pid, now))
            db.execute(
                "UPDATE steps SET status='running', attempts=?, input_hashes=?,"
                " started_at=COALESCE(started_at,?) WHERE run_id=? AND step=?",
                (attempt, json.dumps(dict(input_hashes), sort_keys=True), now, run_id, step))

    def queue_attempt(self, run_id: str, step: str, attempt: int, worker_pid: int | None
                      ) -> None:
        """An attempt queued behind another on its worker (status ``queued``): its number
        is taken before it can start, so a resumed run never reuses it."""
        self._write(
            "INSERT INTO attempts (run_id, step, attempt, status, worker_pid, started_at)"
            " VALUES (?,?,?,?,?,?)", (run_id, step, attempt, "queued", worker_pid, time.time()))

    def drop_queued_attempt(self, run_id: str, step: str, attempt: int) -> None:
        """Forget a queued attempt that never started (what it followed did not succeed)."""
        self._write("DELETE FROM attempts WHERE run_id=? AND step=? AND attempt=? AND"
                    " status='queued'", (run_id, step, attempt))

    def end_attempt(self, run_id: str, step: str, attempt: int, status: str,
                    error_type: str | None = None, error: str | None = None,
                    traceback: str | None = None) -> None:
        self._write(
            "UPDATE attempts SET status=?, ended_at=?, error_type=?, error=?, traceback=?"
            " WHERE run_id=? AND step=? AND attempt=?",
            (status, time.time(), error_type, error, traceback, run_id, step, attempt))

    def commit_step(self, run_id: str, step: str, attempt: int, digest: str, codec: str,
                    size: int, *, at: float | None = None) -> None:
        """Record a committed output and the attempt's success in one transaction (``at``:
        when the attempt ended, if that was before now).

        One commit row per step, ever: committing the same bytes again (a resumed run
        re-creating an object that vanished from the store) keeps the first row; other
        bytes raise :class:`LedgerError`.
        """
        now = time.time() if at is None else at
        with self.tx() as db:
            added = db.execute("INSERT OR IGNORE INTO commits VALUES (?,?,?,?)",
                               (run_id, step, digest, now)).rowcount
            if not added:  # a row exists: fine for the same bytes, never for others
                first = db.execute("SELECT output_hash FROM commits WHERE run_id=? AND step=?",
                                   (run_id, step)).fetchone()
                if first is None or first["output_hash"] != digest:
                    raise LedgerError(
                        f"step {step!r} of run {run_id} already committed other bytes "
                        f"({first['output_hash'] if first else '?'}, now {digest}); a step "
                        "commits once. Fix: start a new run (`reliability run --new`)")
            db.execute(
                "UPDATE steps SET status='succeeded', output_hash=?, output_codec=?,"
                " output_size=?, ended_at=?, error=NULL WHERE run_id=? AND step=?",
                (digest, codec, size, now, run_id, step))
            db.execute(
                "UPDATE attempts SET status='succeeded', ended_at=? WHERE run_id=? AND step=?"
                " AND attempt=?", (now, run_id, step, attempt))

    def release_commit(self, run_id: str, step: str, reason: str) -> None:
        """Forget a step's commit whose object is gone from the store, so that running
        the step again may commit (possibly other bytes, for a step that is not
        deterministic). The loss stays in the audit trail as an ``output_lost`` event."""
        now = time.time()
        with self.tx() as db:
            row = db.execute("SELECT output_hash FROM commits WHERE run_id=? AND step=?",
                             (run_id, step)).fetchone()
            if row is None:
                return
            db.execute("DELETE FROM commits WHERE run_id=? AND step=?", (run_id, step))
            db.execute(
                "INSERT INTO events (run_id, time, kind, step, attempt, details) VALUES"
                " (?,?,?,?,?,?)", (run_id, now, "output_lost", step, None,
                                   json.dumps({"output_hash": row["output_hash"],
                                               "reason": reason}, sort_keys=True)))

    def set_step(self, run_id: str, step: str, status: str, error: str | None = None) -> None:
        self._write(
            "UPDATE steps SET status=?, error=?, ended_at=? WHERE run_id=? AND step=?",
            (status, error, time.time(), run_id, step))

    def skip_steps(self, run_id: str, reasons: Mapping[str, str]) -> list[str]:
        """Record the still-pending steps of ``reasons`` (step -> why) ``skipped``: steps
        the run will not run, such as a conditional branch the host did not take. Returns
        the steps this call changed."""
        now, changed = time.time(), []
        with self.tx() as db:
            for step, reason in reasons.items():
                if db.execute("UPDATE steps SET status='skipped', error=?, ended_at=? WHERE"
                              " run_id=? AND step=? AND status='pending'",
                              (reason, now, run_id, step)).rowcount:
                    changed.append(step)
        return changed

    def carry_steps(self, run_id: str, origin: str, steps: Sequence[str]
                    ) -> list[dict[str, Any]]:
        """Give the still-pending ``steps`` of run ``run_id`` the outcome they had in run
        ``origin`` where it was ``succeeded`` (with its commit) or ``skipped``: the steps
        an orchestrator's resume copied from the run it resumes instead of running them.
        Returns the rows of ``origin`` copied."""
        now, carried = time.time(), []
        with self.tx() as db:
            for step in steps:
                row = db.execute("SELECT * FROM steps WHERE run_id=? AND step=? AND status"
                                 " IN ('succeeded', 'skipped')", (origin, step)).fetchone()
                if row is None or not db.execute(
                        "UPDATE steps SET status=?, input_hashes=?, output_hash=?,"
                        " output_codec=?, output_size=?, error=?, ended_at=? WHERE run_id=?"
                        " AND step=? AND status='pending'",
                        (row["status"], row["input_hashes"], row["output_hash"],
                         row["output_codec"], row["output_size"], row["error"], now, run_id,
                         step)).rowcount:
                    continue
                if row["output_hash"]:
                    db.execute("INSERT OR IGNORE INTO commits VALUES (?,?,?,?)",
                               (run_id, step, row["output_hash"], now))
                carried.append(dict(row))
        return carried

    def abandon_running_attempts(self, run_id: str, reason: str) -> int:
        """Mark attempts a dead runner left 'running' as lost; return how many."""
        cur = self._write(
            "UPDATE attempts SET status='lost', ended_at=?, error_type='RunnerLost', error=?"
            " WHERE run_id=? AND status IN ('running', 'queued')",
            (time.time(), reason, run_id))
        return cur.rowcount

    # -- runs driven by another orchestrator ------------------------------------------
    def adopt_run(self, run_id: str, pipeline: str, run_key: str, params: Mapping[str, Any],
                  steps: Sequence[str], *, code_version: str | None = None,
                  interval: tuple[str, str] | None = None,
                  trigger: Trigger | str | None = None, trigger_source: str | None = None,
                  environment: str | None = None) -> bool:
        """Record a run another orchestrator executes, unless it is recorded already.

        Its tasks may start in several processes at once: the first creates the run
        (``running``, with no runner process of ours), later ones only add the step rows
        that are missing -- reopening the run if it had been settled without them. Returns
        whether this call created the run.
        """
        kind = Trigger.parse(trigger)
        now = time.time()
        with self.tx() as db:
            created = db.execute(
                "INSERT OR IGNORE INTO runs (run_id, pipeline, run_key, status, params,"
                " code_version, interval_start, interval_end, trigger, trigger_source,"
                " environment, host, created_at, started_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (*_run_identity(run_id, pipeline, run_key, RunStatus.RUNNING, params,
                                code_version, interval, kind, trigger_source, environment),
                 hostname(), now, now)).rowcount
            added = db.executemany(
                "INSERT OR IGNORE INTO steps (run_id, step, status) VALUES (?,?,'pending')",
                [(run_id, s) for s in steps]).rowcount
            if added and not created:
                db.execute("UPDATE runs SET status='running', ended_at=NULL, error=NULL"
                           " WHERE run_id=?", (run_id,))
        return bool(created)

    def settle_run(self, run_id: str) -> str | None:
        """Finish a run whose every step has ended: ``failed`` if one failed, else
        ``succeeded``. Returns the status set, or None while steps are still open (or the
        run was finished already), so of several processes exactly one finishes it."""
        with self.tx() as db:
            row = db.execute("SELECT status FROM runs WHERE run_id=?", (run_id,)).fetchone()
            if row is None or row["status"] in FINAL_RUN_STATES:
                return None
            states = [r[0] for r in db.execute("SELECT status FROM steps WHERE run_id=?",
                                               (run_id,))]
            if any(s not in ("succeeded", "failed", "upstream_failed", "skipped")
                   for s in states):
                return None
            status = "failed" if any(s not in ("succeeded", "skipped") for s in states) \
                else "succeeded"
            error = None
            if status == "failed":
                bad = db.execute("SELECT step, error FROM steps WHERE run_id=? AND"
                                 " status='failed' ORDER BY rowid LIMIT 1", (run_id,)).fetchone()
                error = f"step {bad['step']!r} failed: {bad['error']}" if bad else None
            db.execute("UPDATE runs SET status=?, ended_at=?, error=? WHERE run_id=?",
                       (status, time.time(), error, run_id))
        return status

    # -- events -----------------------------------------------------------------------
    def record(self, ev: Event) -> None:
        """Record a lifecycle event: its details, with its error and duration if it has them."""
        details = dict(ev.details)
        if ev.error:
            details["error"] = ev.error
        if ev.duration is not None:
            details["duration"] = ev.duration
        self.record_event(ev.run_id, ev.time, ev.kind.value, ev.step, ev.attempt, details)

    def record_event(self, run_id: str, t: float, kind: str, step: str | None,
                     attempt: int | None, details: Mapping[str, Any]) -> None:
        self._write(
            "INSERT INTO events (run_id, time, kind, step, attempt, details) VALUES"
            " (?,?,?,?,?,?)", (run_id, t, kind, step, attempt,
                               json.dumps(dict(details), sort_keys=True, default=str)))

    def events(self, run_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        q, args = "SELECT * FROM events WHERE run_id=?", [run_id]
        if kind:
            q += " AND kind=?"
            args.append(kind)
        out = []
        for r in self._read(q + " ORDER BY id", args):
            d = dict(r)
            d["details"] = json.loads(d["details"] or "{}")
            out.append(d)
        return out

    def recent_events(self, kinds: Sequence[str], *, pipeline: str | None = None,
                      step: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The latest events of ``kinds``, newest first, each with its run's ``pipeline``
        and ``trigger``. Read backwards along the ``events_kind`` index, one kind at a time:
        the cost follows ``limit``, not the size of the ledger."""
        q = ("SELECT e.*, r.pipeline, r.trigger FROM events e JOIN runs r USING (run_id)"
             " WHERE e.kind=? AND (? IS NULL OR r.pipeline=?) AND (? IS NULL OR e.step=?)"
             " ORDER BY e.id DESC LIMIT ?")
        rows = [dict(r) for kind in dict.fromkeys(kinds)
                for r in self.db.execute(q, (kind, pipeline, pipeline, step, step, limit))]
        rows.sort(key=lambda r: r["id"], reverse=True)
        for d in rows[:limit]:
            d["details"] = json.loads(d["details"] or "{}")
        return rows[:limit]

    # -- alerts received from Alertmanager ---------------------------------------------
    def record_alert(self, fingerprint: str, starts_at: str, *, alertname: str, status: str,
                     labels: Mapping[str, str], annotations: Mapping[str, str],
                     ends_at: str | None = None, run_id: str | None = None,
                     runbook: str | None = None) -> AlertRecord:
        """Store a firing or resolved alert; one row per (fingerprint, starts_at).

        A repeated notification updates status, annotations and end time; the run and
        runbook of the first notification are kept unless none was known then.
        """
        now = time.time()
        with self.tx() as db:
            db.execute(
                "INSERT INTO alerts (fingerprint, starts_at, alertname, status, labels,"
                " annotations, ends_at, received_at, updated_at, run_id, runbook)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (fingerprint, starts_at) DO UPDATE"
                " SET status=excluded.status, annotations=excluded.annotations,"
                " ends_at=excluded.ends_at, updated_at=excluded.updated_at,"
                " run_id=COALESCE(alerts.run_id, excluded.run_id),"
                " runbook=COALESCE(alerts.runbook, excluded.runbook)",
                (fingerprint, starts_at, alertname, status,
                 json.dumps(dict(labels), sort_keys=True),
                 json.dumps(dict(annotations), sort_keys=True), ends_at, now, now, run_id,
                 runbook))
            row = db.execute("SELECT * FROM alerts WHERE fingerprint=? AND starts_at=?",
                             (fingerprint, starts_at)).fetchone()
        return _alert(row)

    def alerts(self, *, status: str | None = None, limit: int = 100) -> list[AlertRecord]:
        """Stored alerts, firing before resolved, newest first."""
        q, args = "SELECT * FROM alerts", list[Any]()
        if status:
            q += " WHERE status=?"
            args.append(status)
        q += " ORDER BY status='resolved', starts_at DESC, id DESC LIMIT ?"
        return [_alert(r) for r in self.db.execute(q, [*args, limit])]

    def get_alert(self, alert_id: int) -> AlertRecord:
        row = self.db.execute("SELECT * FROM alerts WHERE id=?", (alert_id,)).fetchone()
        if row is None:
            raise LedgerError(f"no alert {alert_id} in ledger {self.path}. Fix: see the "
                              "alert list")
        return _alert(row)


def _alert(row: sqlite3.Row) -> AlertRecord:
    d = dict(row)
    d["labels"] = json.loads(d["labels"])
    d["annotations"] = json.loads(d["annotations"])
    return AlertRecord(**d)


def _run_identity(run_id: str, pipeline: str, run_key: str, status: RunStatus,
                  params: Mapping[str, Any], code_version: str | None,
                  interval: tuple[str, str] | None, kind: Trigger,
                  trigger_source: str | None, environment: str | None) -> tuple[Any, ...]:
    """The values of a new run's first eleven ``runs`` columns (run_id .. environment),
    shared by runs we start and runs a host orchestrator starts."""
    return (run_id, pipeline, run_key, status.value, json.dumps(params, sort_keys=True),
            code_version, interval[0] if interval else None,
            interval[1] if interval else None, kind.value, trigger_source,
            environment or default_environment())


def _record(row: sqlite3.Row) -> RunRecord:
    d = dict(row)
    d["params"] = json.loads(d["params"])
    d["status"] = RunStatus(d["status"])
    d["trigger"] = Trigger.parse(d.get("trigger"))
    d.setdefault("trigger_source", None)
    d.setdefault("environment", None)
    return RunRecord(**d)


def _iso(t: float | None) -> str | None:
    import datetime as dt

    if t is None:
        return None
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _open_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection; also on a read-only directory, where SQLite cannot create the
    WAL's shared-memory file (then the file is read as immutable: nobody can be writing it
    through a directory we cannot write either)."""
    if not path.exists():
        raise LedgerError(f"no run ledger at {path}. Fix: run a pipeline first "
                          "(`reliability run`), or pass --home")
    last: Exception | None = None
    for query in ("mode=ro", "mode=ro&immutable=1"):
        try:
            db = sqlite3.connect(f"{path.resolve().as_uri()}?{query}", uri=True, timeout=10,
                                 check_same_thread=False, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("SELECT 1 FROM runs LIMIT 1").fetchall()
            return db
        except sqlite3.Error as exc:
            last = exc
            with contextlib.suppress(Exception):
                db.close()
    raise LedgerError(f"{path}: cannot read the run ledger ({last}). Fix: pass the runner's "
                      "--home, or move the damaged file aside")


class LedgerView:
    """Read-only queries on a ledger for other processes (exporters, runbooks, web pages):
    a fresh read-only connection per call, so a long-lived reader never holds a snapshot
    or a lock. Production-only answers leave out chaos and exploration runs."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        if self.path.is_dir():
            raise LedgerError(f"{self.path} is a directory, not a run ledger. Fix: pass the "
                              "runner's --home (the directory holding the ledger)")
        db = _open_readonly(self.path)
        try:
            yield db
        except sqlite3.Error as exc:
            raise LedgerError(f"{self.path}: cannot read the run ledger ({exc}). Fix: pass "
                              "the runner's --home, or move the damaged file aside") from None
        finally:
            db.close()

    def exists(self) -> bool:
        return self.path.is_file()

    def last_good_run(self, pipeline: str, *, before: str | None = None,
                      production_only: bool = True) -> dict[str, Any] | None:
        """The latest succeeded run of ``pipeline`` (other than run ``before``)."""
        with self._db() as db:
            row = db.execute(
                "SELECT run_id, ended_at, code_version, interval_start, interval_end, trigger"
                " FROM runs WHERE pipeline=? AND status='succeeded' AND run_id != ?"
                " AND (? = 0 OR COALESCE(runs.trigger, 'manual') NOT IN"
                " ('chaos-baseline', 'chaos', 'explore')) ORDER BY ended_at DESC LIMIT 1",
                (pipeline, before or "", int(production_only))).fetchone()
        if row is None:
            return None
        out = dict(row)  # ended_at as ISO 8601 UTC: it is shown to people
        out["ended_at"] = _iso(out["ended_at"])
        return out

    def last_success_time(self, pipeline: str, *, production_only: bool = True
                          ) -> float | None:
        with self._db() as db:
            row = db.execute("SELECT MAX(ended_at) FROM runs WHERE pipeline=? AND "
                             "status='succeeded' AND (? = 0 OR COALESCE(runs.trigger,"
                             " 'manual') NOT IN ('chaos-baseline', 'chaos', 'explore'))",
                             (pipeline, int(production_only))).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def outcome_counts(self, pipeline: str, since: float, step: str | None = None, *,
                       production_only: bool = True) -> tuple[int, int]:
        """(succeeded, failed) final outcomes of runs (or of ``step``) since ``since``."""
        prod = int(production_only)
        with self._db() as db:
            if step is None:
                rows = db.execute(
                    "SELECT status, COUNT(*) FROM runs WHERE pipeline=? AND created_at>=?"
                    " AND status IN ('succeeded','failed') AND (? = 0 OR COALESCE("
                    "runs.trigger, 'manual') NOT IN ('chaos-baseline', 'chaos', 'explore'))"
                    " GROUP BY status", (pipeline, since, prod))
            else:
                rows = db.execute(
                    "SELECT s.status, COUNT(*) FROM steps s JOIN runs USING (run_id)"
                    " WHERE runs.pipeline=? AND s.step=? AND runs.created_at>=? AND s.status"
                    " IN ('succeeded','failed') AND (? = 0 OR COALESCE(runs.trigger, 'manual')"
                    " NOT IN ('chaos-baseline', 'chaos', 'explore')) GROUP BY s.status",
                    (pipeline, step, since, prod))
            counts = dict(rows.fetchall())
        return int(counts.get("succeeded", 0)), int(counts.get("failed", 0))

    def run(self, run_id: str) -> dict[str, Any]:
        with self._db() as db:
            row = db.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if row is None:
            raise LedgerError(f"no run {run_id!r} in ledger {self.path}. Fix: check the run "
                              "id (see the runner's output) and --home")
        return dict(row)

    def record(self, run_id: str) -> RunRecord:
        with self._db() as db:
            row = db.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if row is None:
            raise LedgerError(f"no run {run_id!r} in ledger {self.path}. Fix: check the run "
                              "id and --home")
        return _record(row)

    def events(self, run_id: str) -> list[dict[str, Any]]:
        with self._db() as db:
            out = [dict(r) for r in db.execute(
                "SELECT * FROM events WHERE run_id=? ORDER BY id", (run_id,))]
        for r in out:
            r["details"] = json.loads(r["details"] or "{}")
        return out

    def changes_since(self, event_id: int, commit_rowid: int, run_id: str | None = None
                      ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """New event rows (with their run's pipeline and trigger) and new commits (with
        their step's start and attempts), for feeds that follow the ledger."""
        with self._db() as db:
            events = [dict(r) for r in db.execute(
                "SELECT e.*, r.pipeline, r.trigger AS run_trigger FROM events e JOIN runs r"
                " USING (run_id) WHERE e.id > ? AND (? IS NULL OR e.run_id = ?)"
                " ORDER BY e.id", (event_id, run_id, run_id))]
            commits = [dict(r) for r in db.execute(
                "SELECT c.rowid AS rid, c.run_id, c.step, c.output_hash, c.committed_at,"
                " s.started_at, s.attempts, r.pipeline, r.trigger AS run_trigger FROM commits c"
                " JOIN steps s ON s.run_id=c.run_id AND s.step=c.step JOIN runs r ON"
                " r.run_id=c.run_id WHERE c.rowid > ? AND (? IS NULL OR c.run_id = ?)"
                " ORDER BY c.rowid", (commit_rowid, run_id, run_id))]
        return events, commits


# chaos-baseline, chaos and explore runs never count as production
# the production filter in the queries above spells out the non-production triggers:
assert {t.value for t in Trigger if not t.production} == {"chaos-baseline", "chaos", "explore"}
