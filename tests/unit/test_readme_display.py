"""The event lines `reliability run` prints, as the README's commands show them."""

from __future__ import annotations

from reliability.display import RunDisplay
from reliability.events import Event, EventKind


def _plain(ev: Event) -> str:
    from rich.text import Text

    return Text.from_markup(RunDisplay._line(ev)).plain


def test_run_level_breach_names_its_sla_once_without_a_blank_step() -> None:
    ev = Event(EventKind.SLA_BREACHED, "reference", "r1", error="finish_by SLA of run "
               "breached: at 2026-01-03T00:00:00+00:00", details={"sla": "finish_by"})
    line = _plain(ev)
    assert line.startswith("⏰ finish_by SLA of run breached")
    assert line.count("finish_by") == 1 and "  " not in line


def test_step_event_keeps_step_attempt_and_a_reason_the_error_does_not_repeat() -> None:
    ev = Event(EventKind.STEP_RETRYING, "reference", "r1", step="train", attempt=2,
               error="OSError: boom", details={"reason": "worker_lost"})
    assert _plain(ev) == "↻ train attempt 2 worker_lost OSError: boom"
