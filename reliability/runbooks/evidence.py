"""The evidence a runbook is rendered with, and a read-only view of the run ledger.

:class:`Evidence` is the typed context of every template: which step, which check and its
failure cases, which fault was injected, the SLA breached, the last good run, and the exact
commands to resume or backfill. :class:`LedgerView` reads the ledger on its own read-only
SQLite connection, so it is safe from any thread while the runner writes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reliability.errors import LedgerError

__all__ = ["FAMILIES", "Evidence", "LedgerView", "iso", "shell_quote"]

FAMILIES = ("contract_violation", "sla_breach", "worker_lost", "dependency_unreachable",
            "stale_pipeline", "step_failed")


def iso(t: float | None) -> str | None:
    """A Unix time as ISO 8601 UTC, or None."""
    if t is None:
        return None
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")


def shell_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


@dataclass(frozen=True)
class Evidence:
    """Everything known about one failure; every field is a template variable."""

    family: str
    pipeline: str
    run_id: str
    summary: str
    step: str | None = None
    attempt: int | None = None
    error: str | None = None
    error_type: str | None = None
    occurred_at: str | None = None
    failures: Sequence[Mapping[str, Any]] = ()
    faults: Sequence[Mapping[str, Any]] = ()
    breach: Mapping[str, Any] | None = None
    last_good_run: Mapping[str, Any] | None = None
    interval: Mapping[str, str] | None = None
    home: str | None = None
    runbook_url: str | None = None
    commands: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.commands:
            object.__setattr__(self, "commands", self.default_commands())

    def default_commands(self) -> dict[str, str]:
        home = f" --home {shell_quote(self.home)}" if self.home else ""
        cmds = {"resume": f"reliability resume {shell_quote(self.run_id)}{home}"}
        if self.interval:
            cmds["backfill"] = (
                f"reliability backfill {shell_quote(self.pipeline)} --start "
                f"{shell_quote(self.interval['start'])} --end "
                f"{shell_quote(self.interval['end'])}{home}")
        return cmds

    def variables(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @property
    def slug(self) -> str:
        """File name stem: ``<family>-<step or run>[-<sla>]``."""
        parts = [self.family, self.step or "run"]
        if self.breach and self.breach.get("sla"):
            parts.append(str(self.breach["sla"]))
        return "-".join(p.replace("/", "_") for p in parts)


class LedgerView:
    """Read-only queries on ``ledger.db`` (a fresh connection per call)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        if not self.path.exists():
            raise LedgerError(f"no ledger at {self.path}. Fix: pass the runner's --home")
        if self.path.is_dir():
            raise LedgerError(f"{self.path} is a directory, not a run ledger. Fix: pass the "
                              "runner's --home (the directory holding ledger.db)")
        uri = f"{self.path.resolve().as_uri()}?mode=ro"
        try:
            with closing(sqlite3.connect(uri, uri=True, timeout=10)) as db:
                db.row_factory = sqlite3.Row
                yield db
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"{self.path}: cannot read the run ledger ({exc}). Fix: pass the "
                              "runner's --home, or move the damaged file aside") from None

    def last_good_run(self, pipeline: str, *, before: str | None = None
                      ) -> dict[str, Any] | None:
        """The latest succeeded run of ``pipeline`` (other than run ``before``)."""
        with self._db() as db:
            row = db.execute(
                "SELECT run_id, ended_at, code_version, interval_start, interval_end FROM runs"
                " WHERE pipeline=? AND status='succeeded' AND run_id != ?"
                " ORDER BY ended_at DESC LIMIT 1", (pipeline, before or "")).fetchone()
        if row is None:
            return None
        out = dict(row)
        out["ended_at"] = iso(out["ended_at"])
        return out

    def last_success_time(self, pipeline: str) -> float | None:
        with self._db() as db:
            row = db.execute("SELECT MAX(ended_at) FROM runs WHERE pipeline=? AND "
                             "status='succeeded'", (pipeline,)).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def outcome_counts(self, pipeline: str, since: float, step: str | None = None
                       ) -> tuple[int, int]:
        """(succeeded, failed) final outcomes of runs (or of ``step``) since ``since``."""
        with self._db() as db:
            if step is None:
                rows = db.execute(
                    "SELECT status, COUNT(*) FROM runs WHERE pipeline=? AND created_at>=?"
                    " AND status IN ('succeeded','failed') GROUP BY status", (pipeline, since))
            else:
                rows = db.execute(
                    "SELECT s.status, COUNT(*) FROM steps s JOIN runs r USING (run_id)"
                    " WHERE r.pipeline=? AND s.step=? AND r.created_at>=? AND s.status IN"
                    " ('succeeded','failed') GROUP BY s.status", (pipeline, step, since))
            counts = dict(rows.fetchall())
        return int(counts.get("succeeded", 0)), int(counts.get("failed", 0))

    def run(self, run_id: str) -> dict[str, Any]:
        with self._db() as db:
            row = db.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if row is None:
            raise LedgerError(f"no run {run_id!r} in ledger {self.path}. Fix: check the run "
                              "id (see the runner's output) and --home")
        return dict(row)

    def events(self, run_id: str) -> list[dict[str, Any]]:
        with self._db() as db:
            rows = db.execute("SELECT * FROM events WHERE run_id=? ORDER BY id", (run_id,))
            out = [dict(r) for r in rows]
        for r in out:
            r["details"] = json.loads(r["details"] or "{}")
        return out
