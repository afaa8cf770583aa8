"""The run ledger: runs, steps, attempts and events in SQLite (WAL).

It is the audit trail (what ran, when, on which worker, with which inputs and outputs) and
the resume point: a run whose runner died is finished from here without redoing committed
steps. One writer (the runner process); readers (CLI, dashboards) can read concurrently.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reliability._proc import holds, start_token
from reliability.errors import LedgerError

__all__ = ["AlertRecord", "Ledger", "RunRecord"]

SCHEMA_VERSION = 2
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


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_id: str
    pipeline: str
    run_key: str
    status: str
    params: dict[str, Any]
    code_version: str | None
    interval_start: str | None
    interval_end: str | None
    trigger: str | None
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


@dataclass(frozen=True, slots=True)
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


FINAL_RUN_STATES = frozenset({"succeeded", "failed"})
# Triggers of experiment runs (chaos and explore, and their baselines): they share the ledger
# but never count as production history. "explore-baseline" is the older spelling.
EXPERIMENT_TRIGGERS = ("chaos-baseline", "chaos", "explore", "explore-baseline")


class Ledger:
    """SQLite-backed ledger. Use one instance per process.

    The connection is shared by the run loop and threads that publish events (SLA timers,
    chaos controllers); a lock serializes writes, so a statement from another thread never
    lands inside (and is never rolled back with) the run loop's open transaction.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LedgerError(
                f"{self.path.parent}: cannot create the runner home ({exc.strerror or exc}). "
                "Fix: point --home (or RELIABILITY_HOME) at a writable directory") from None
        if self.path.is_dir():
            raise LedgerError(f"{self.path}: is a directory, not a run ledger. Fix: move it "
                              "aside, or point --home at another directory")
        self._lock = threading.RLock()
        try:
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                      check_same_thread=False)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.executescript(_SCHEMA)
            self._migrate()
        except LedgerError:
            self.db.close()
            raise
        except sqlite3.DatabaseError as exc:
            raise LedgerError(
                f"{self.path}: cannot open the run ledger ({exc}). Fix: point --home at a "
                "writable directory, or move the damaged file aside") from None

    def _migrate(self) -> None:
        """Bring a ledger written by an older version up to :data:`SCHEMA_VERSION`."""
        if self._schema_version() == SCHEMA_VERSION:
            return  # the common case takes no write lock
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
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                       (str(SCHEMA_VERSION),))

    def _schema_version(self) -> int | None:
        row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            return None
        try:
            return int(row[0])
        except ValueError:
            raise LedgerError(
                f"{self.path}: meta.schema_version is {row[0]!r}, not a number. Fix: move the "
                "damaged file aside, or point --home at another directory") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
                self.db.execute("COMMIT")  # may fail too (deferred constraints, disk full)
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise

    def _write(self, sql: str, args: Sequence[Any]) -> sqlite3.Cursor:
        with self._lock:
            return self.db.execute(sql, args)

    # -- runs -------------------------------------------------------------------------
    def create_run(self, run_id: str, pipeline: str, run_key: str, params: Mapping[str, Any],
                   steps: Sequence[str], *, code_version: str | None = None,
                   interval: tuple[str, str] | None = None, trigger: str | None = None
                   ) -> None:
        now = time.time()
        with self.tx() as db:
            db.execute(
                "INSERT INTO runs (run_id, pipeline, run_key, status, params, code_version,"
                " interval_start, interval_end, trigger, runner_pid, host, runner_start,"
                " created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (run_id, pipeline, run_key, "pending", json.dumps(params, sort_keys=True),
                 code_version, interval[0] if interval else None,
                 interval[1] if interval else None, trigger, os.getpid(),
                 socket.gethostname(), start_token(), now))
            db.executemany("INSERT INTO steps (run_id, step, status) VALUES (?,?,'pending')",
                           [(run_id, s) for s in steps])

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
                       (os.getpid(), socket.gethostname(), start_token(), run_id))
        return None

    def mark_run_started(self, run_id: str) -> None:
        self._write(
            "UPDATE runs SET status='running', runner_pid=?, runner_start=?,"
            " started_at=COALESCE(started_at,?) WHERE run_id=?",
            (os.getpid(), start_token(), time.time(), run_id))

    def finish_run(self, run_id: str, status: str, error: str | None = None) -> None:
        self._write("UPDATE runs SET status=?, ended_at=?, error=? WHERE run_id=?",
                        (status, time.time(), error, run_id))

    def get_run(self, run_id: str) -> RunRecord:
        row = self.db.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if row is None:
            prefix = self.db.execute(
                "SELECT * FROM runs WHERE run_id LIKE ? ORDER BY created_at DESC LIMIT 2",
                (run_id + "%",)).fetchall()
            if len(prefix) == 1:
                row = prefix[0]
            else:
                raise LedgerError(
                    f"no run {run_id!r} in ledger {self.path}. Fix: list runs with "
                    "`reliability runs list`")
        return _record(row)

    def latest_for_key(self, run_key: str) -> RunRecord | None:
        row = self.db.execute(
            "SELECT * FROM runs WHERE run_key=? ORDER BY created_at DESC LIMIT 1",
            (run_key,)).fetchone()
        return _record(row) if row else None

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
        return [_record(r) for r in self.db.execute(q, args)]

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
        rows = self.db.execute("SELECT * FROM steps WHERE run_id=? ORDER BY rowid", (run_id,))
        return [dict(r) for r in rows]

    def attempts(self, run_id: str, step: str | None = None) -> list[dict[str, Any]]:
        q, args = "SELECT * FROM attempts WHERE run_id=?", [run_id]
        if step:
            q += " AND step=?"
            args.append(step)
        rows = self.db.execute(q + " ORDER BY started_at, step, attempt", args)
        return [dict(r) for r in rows]

    def commits(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT * FROM commits WHERE run_id=? ORDER BY rowid", (run_id,))
        return [dict(r) for r in rows]

    def start_attempt(self, run_id: str, step: str, attempt: int, worker_pid: int | None,
                      input_hashes: Mapping[str, str]) -> None:
        now = time.time()
        with self.tx() as db:
            db.execute(
                "INSERT INTO attempts (run_id, step, attempt, status, worker_pid,"
                " started_at) VALUES (?,?,?,?,?,?)",
                (run_id, step, attempt, "running", worker_pid, now))
            db.execute(
                "UPDATE steps SET status='running', attempts=?, input_hashes=?,"
                " started_at=COALESCE(started_at,?) WHERE run_id=? AND step=?",
                (attempt, json.dumps(dict(input_hashes), sort_keys=True), now, run_id, step))

    def end_attempt(self, run_id: str, step: str, attempt: int, status: str,
                    error_type: str | None = None, error: str | None = None,
                    traceback: str | None = None) -> None:
        self._write(
            "UPDATE attempts SET status=?, ended_at=?, error_type=?, error=?, traceback=?"
            " WHERE run_id=? AND step=? AND attempt=?",
            (status, time.time(), error_type, error, traceback, run_id, step, attempt))

    def commit_step(self, run_id: str, step: str, attempt: int, digest: str, codec: str,
                    size: int) -> None:
        """Record a committed output and the attempt's success in one transaction.

        One commit row per step, ever: committing the same bytes again (a resumed run
        re-creating an object that vanished from the store) keeps the first row; other
        bytes raise :class:`sqlite3.IntegrityError`.
        """
        now = time.time()
        with self.tx() as db:
            added = db.execute("INSERT OR IGNORE INTO commits VALUES (?,?,?,?)",
                               (run_id, step, digest, now)).rowcount
            if not added:  # a row exists: fine for the same bytes, never for others
                first = db.execute("SELECT output_hash FROM commits WHERE run_id=? AND step=?",
                                   (run_id, step)).fetchone()
                if first is None or first["output_hash"] != digest:
                    raise sqlite3.IntegrityError(
                        f"step {step!r} of run {run_id} already committed other bytes")
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

    def abandon_running_attempts(self, run_id: str, reason: str) -> int:
        """Mark attempts a dead runner left 'running' as lost; return how many."""
        cur = self._write(
            "UPDATE attempts SET status='lost', ended_at=?, error_type='RunnerLost', error=?"
            " WHERE run_id=? AND status='running'", (time.time(), reason, run_id))
        return cur.rowcount

    # -- events -----------------------------------------------------------------------
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
        for r in self.db.execute(q + " ORDER BY id", args):
            d = dict(r)
            d["details"] = json.loads(d["details"] or "{}")
            out.append(d)
        return out

    def recent_events(self, kinds: Sequence[str], *, pipeline: str | None = None,
                      step: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The latest events of ``kinds``, newest first, each with its run's ``pipeline``
        and ``trigger``."""
        q = ("SELECT e.*, r.pipeline, r.trigger FROM events e JOIN runs r USING (run_id)"
             " WHERE e.kind IN (SELECT value FROM json_each(?))")
        args: list[Any] = [json.dumps(list(kinds))]
        if pipeline is not None:
            q += " AND r.pipeline=?"
            args.append(pipeline)
        if step is not None:
            q += " AND e.step=?"
            args.append(step)
        out = []
        for r in self.db.execute(q + " ORDER BY e.id DESC LIMIT ?", [*args, limit]):
            d = dict(r)
            d["details"] = json.loads(d["details"] or "{}")
            out.append(d)
        return out

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


def _record(row: sqlite3.Row) -> RunRecord:
    d = dict(row)
    d["params"] = json.loads(d["params"])
    return RunRecord(**d)
