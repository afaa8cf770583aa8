"""Scheduling benchmarks.

1. Planning a 10-year daily backfill (3,650 data intervals) and recording the plan in the
   ledger; target <= 1 s.
2. Scheduler overhead per fire: ``Scheduler.trigger`` (claim in SQLite, submit, record the
   end) against calling the same run function directly; both with a no-op run function, so
   the difference is pure scheduling cost.

Run: python bench/bench_schedule.py
"""

from __future__ import annotations

import datetime as dt
import logging
import statistics
import tempfile
import time
from pathlib import Path

from reliability.schedule import (
    Catchup,
    CronTimetable,
    IntervalTimetable,
    RunRequest,
    Schedule,
    Scheduler,
    ScheduleStore,
    plan_backfill,
)
from reliability.schedule.scheduler import RunOutcome

UTC = dt.UTC


def bench_plan(root: Path) -> None:
    start = dt.datetime(2016, 1, 1, tzinfo=UTC)
    end = start + dt.timedelta(days=3650)
    for label, tt in (("cron '0 0 * * *' Europe/Berlin", CronTimetable("0 0 * * *",
                                                                      "Europe/Berlin")),
                      ("every 1d", IntervalTimetable(dt.timedelta(days=1), start))):
        times = []
        for i in range(3):
            store = ScheduleStore.at_home(root / f"plan-{label[:5]}-{i}")
            t0 = time.perf_counter()
            plan = plan_backfill(store, "bench", tt, start, end)
            times.append(time.perf_counter() - t0)
            n = store.query("SELECT COUNT(*) FROM backfill_items")[0][0]
            store.close()
        best = min(times)
        print(f"plan+record 10y daily backfill ({label}): {len(plan.items)} intervals, "
              f"{n} rows, best {best * 1000:.0f} ms of 3 -> {best / 1.0:.2f}x of the 1 s "
              f"target {'(ok)' if best <= 1.0 else '(OVER)'}")


def noop(req: RunRequest) -> RunOutcome:
    return RunOutcome(req.run_id, "succeeded")


def bench_fire(root: Path, n: int = 500) -> None:
    anchor = dt.datetime(2026, 1, 1, tzinfo=UTC)
    sched = Scheduler([Schedule("s", "bench", IntervalTimetable(dt.timedelta(minutes=1),
                                                                anchor),
                                catchup=Catchup())],
                      execute=noop, home=root / "fire", now=lambda: anchor, max_active=1)
    tt = sched.get("s").timetable
    ivs = tt.intervals(anchor, anchor + dt.timedelta(minutes=n + 1))[:n]
    t0 = time.perf_counter()
    for iv in ivs:
        noop(RunRequest("s", "bench", iv, "x", False, "bench"))
    direct = (time.perf_counter() - t0) / n
    per = []
    for iv in ivs:
        t = time.perf_counter()
        sched.trigger("s", iv, wait=True)
        per.append(time.perf_counter() - t)
    dup = []
    for iv in ivs[:100]:
        t = time.perf_counter()
        sched.trigger("s", iv)
        dup.append(time.perf_counter() - t)
    sched.shutdown()
    sched.store.close()
    fire = statistics.mean(per)
    print(f"fire through the scheduler: {fire * 1e6:.0f} us/fire (p50 "
          f"{statistics.median(per) * 1e6:.0f} us) vs direct call {direct * 1e6:.2f} us -> "
          f"overhead {(fire - direct) * 1e6:.0f} us/fire ({fire / direct:.0f}x a no-op call)")
    print(f"duplicate trigger (no-op, says so): {statistics.mean(dup) * 1e6:.0f} us")


def main() -> None:
    logging.getLogger("reliability.schedule").setLevel(logging.ERROR)  # duplicates are noted
    with tempfile.TemporaryDirectory() as d:
        bench_plan(Path(d))
        bench_fire(Path(d))


if __name__ == "__main__":
    main()
