"""Trigger sources: APScheduler for time, a polling watcher for files.

:class:`TriggerSource` is the only place that touches APScheduler (3.11). It asks each
:class:`~reliability.schedule.intervals.Timetable` for the next fire time through one
adapter trigger, so the DST rules and the interval arithmetic stay ours, and moving to
APScheduler 4 means rewriting this class only. Combining triggers are not used (an
``AndTrigger`` of an interval and a cron trigger can loop forever in 3.11).

A fire only wakes the scheduler; what runs is planned from the ledger (see
:mod:`reliability.schedule.catchup`), so a late or coalesced wake-up loses nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reliability.pipeline import DataInterval
from reliability.schedule.intervals import Timetable

__all__ = ["PARTITION_CODES", "FileWatcher", "TriggerSource", "partition_instant"]

log = logging.getLogger("reliability.schedule")

_TICK = dt.timedelta(microseconds=1)


def _adapter(timetable: Timetable) -> Any:
    from apscheduler.triggers.base import BaseTrigger

    class TimetableTrigger(BaseTrigger):  # type: ignore[misc]
        """APScheduler trigger that asks our timetable for the next fire time."""

        def __init__(self, tt: Timetable) -> None:
            self.tt = tt

        def get_next_fire_time(self, previous_fire_time: dt.datetime | None,
                               now: dt.datetime) -> dt.datetime | None:
            after = previous_fire_time if previous_fire_time is not None else now - _TICK
            return self.tt.next_fire(after)

        def __str__(self) -> str:
            return self.tt.describe()

    return TimetableTrigger(timetable)


class TriggerSource:
    """A background APScheduler that calls ``callback`` at each fire time of a timetable."""

    def __init__(self) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        self._aps = BackgroundScheduler(timezone=dt.UTC)

    def add(self, name: str, timetable: Timetable, callback: Callable[[], None]) -> None:
        # coalesce + no grace: one wake-up however many fires were missed; the catch-up
        # planner decides from the ledger what those missed fires mean.
        self._aps.add_job(callback, trigger=_adapter(timetable), id=name, name=name,
                          coalesce=True, max_instances=1, misfire_grace_time=None,
                          replace_existing=True)

    def next_fire_time(self, name: str) -> dt.datetime | None:
        job = self._aps.get_job(name)
        return job.next_run_time if job is not None else None

    def start(self) -> None:
        self._aps.start()

    def shutdown(self) -> None:
        if self._aps.running:
            self._aps.shutdown(wait=False)


_STRPTIME = {"%Y": r"\d{4}", "%m": r"\d{2}", "%d": r"\d{2}", "%H": r"\d{2}",
             "%M": r"\d{2}", "%S": r"\d{2}", "%j": r"\d{3}", "%%": "%"}
#: The strptime codes a partition pattern may use.
PARTITION_CODES = frozenset(_STRPTIME)


def partition_instant(pattern: str, text: str, tz: dt.tzinfo) -> dt.datetime | None:
    """Find strptime ``pattern`` (e.g. ``dt=%Y-%m-%d``) in ``text``; the instant in ``tz``."""
    regex = "".join(_STRPTIME.get(tok, re.escape(tok))
                    for tok in re.findall(r"%.|[^%]+", pattern))
    m = re.search(regex, text)
    if m is None:
        return None
    try:
        naive = dt.datetime.strptime(m.group(0), pattern)
    except ValueError:
        return None
    return naive.replace(tzinfo=tz)


class FileWatcher:
    """Polls a directory; calls ``fire(interval, source)`` once per new matching file.

    Files present when the watcher starts count as arrivals too: the ledger turns a file
    whose interval already ran into a no-op, and one that arrived during downtime into a run.
    """

    def __init__(self, watch: Any, fire: Callable[[DataInterval | None, str], None],
                 timetable: Timetable, now: Callable[[], dt.datetime]) -> None:
        self.watch = watch
        self.fire = fire
        self.timetable = timetable
        self.now = now
        self._seen: set[Path] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="file-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def scan(self) -> int:
        """Look once; fire for each new file. Returns how many fired."""
        root = Path(self.watch.path)
        if not root.is_dir():
            return 0
        fired = 0
        for p in sorted(root.rglob(self.watch.glob)):
            if p in self._seen or not p.is_file():
                continue
            self._seen.add(p)
            rel = p.relative_to(root).as_posix()
            run, iv = self._interval_for(rel)
            if run:
                self.fire(iv, f"file:{rel}")
                fired += 1
        return fired

    def _interval_for(self, rel: str) -> tuple[bool, DataInterval | None]:
        """(whether to fire, for which interval: None = the latest complete one)."""
        if self.watch.partition:
            t = partition_instant(self.watch.partition, rel, self.timetable.tz)
            if t is not None:
                iv = self.timetable.interval_containing(t)
                if iv is None:  # before the schedule's start or after its end
                    log.warning("file %s is for %s, outside every data interval of %s; "
                                "nothing runs", rel, t.isoformat(), self.timetable.describe())
                return iv is not None, iv
            log.warning("file %s does not match partition pattern %r; running the latest "
                        "complete interval", rel, self.watch.partition)
        return True, self.timetable.latest_complete(self.now())

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.scan()
            except Exception:  # keep watching whatever one scan hit
                log.exception("file watch on %s failed", self.watch.path)
            self._stop.wait(self.watch.poll)
