"""The last good run of a pipeline is a production run: chaos and explore runs never count."""

from __future__ import annotations

import time
from pathlib import Path

from reliability.runner import Ledger


def _finished(led: Ledger, run_id: str, status: str, trigger: str | None) -> None:
    led.create_run(run_id, "etl", run_id, {}, ["load"], trigger=trigger)
    led.mark_run_started(run_id)
    led.finish_run(run_id, status)
    time.sleep(0.002)  # distinct ended_at


def test_last_good_run_skips_chaos_and_explore_runs(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.db") as led:
        _finished(led, "etl-manual", "succeeded", None)
        _finished(led, "etl-sched", "succeeded", "schedule")
        _finished(led, "etl-failed", "failed", None)
        for trigger in ("chaos-baseline", "chaos", "explore", "explore-baseline"):
            _finished(led, f"etl-{trigger}", "succeeded", trigger)
        found = [led.last_good_run("etl"), led.last_good_run("etl", before="etl-sched"),
                 led.last_good_run("etl", production_only=False), led.last_good_run("other")]
        assert [r.run_id if r else None for r in found] == [
            "etl-sched", "etl-manual", "etl-explore-baseline", None]
