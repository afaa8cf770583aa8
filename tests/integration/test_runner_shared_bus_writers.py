"""A run's events go to subscribers that write the same SQLite file through connections of
their own (the SLA monitor, another runner of a parallel backfill on the shared bus). The
run must hold no write transaction while it delivers them: a subscriber's write never waits
for the run that is waiting for the subscriber."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from reliability import Pipeline
from reliability.events import Event, EventBus
from reliability.runner import Runner
from reliability.runs import ledger_path

pytestmark = pytest.mark.integration


def test_a_subscriber_writing_through_its_own_connection_never_waits_for_the_run(
        tmp_path: Path) -> None:
    pipe = Pipeline("shared_bus")

    @pipe.step()
    def a() -> int:
        return 1

    @pipe.step(inputs={"x": "a"})
    def b(x: int) -> int:
        return x + 1

    home = tmp_path / "home"
    bus = EventBus()
    runner = Runner(pipe, home=home, workers=1, bus=bus)
    # a writer of its own, as impatient as a subscriber can afford to be inside a delivery
    db = sqlite3.connect(ledger_path(home), timeout=2, isolation_level=None,
                         check_same_thread=False)
    db.execute("CREATE TABLE notes (kind TEXT)")
    errors: list[str] = []

    def note(ev: Event) -> None:
        try:
            db.execute("INSERT INTO notes VALUES (?)", (ev.kind.value,))
        except sqlite3.OperationalError as exc:
            errors.append(f"{ev.kind.value}: {exc}")

    bus.subscribe(note)
    try:
        res = runner.run()
    finally:
        runner.close()
        runner.ledger.close()
    assert res.ok, res.failed
    assert errors == []  # "database is locked": the run held the write lock while delivering
    kinds = [k for (k,) in db.execute("SELECT kind FROM notes")]
    db.close()
    assert kinds.count("step_succeeded") == 2 and kinds[-1] == "run_succeeded"
