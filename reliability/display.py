"""Terminal progress for runs: a rich progress bar fed only by lifecycle events."""

from __future__ import annotations

import time
from typing import Any

from reliability.events import Event, EventBus, EventKind

__all__ = ["RunDisplay"]

_STYLE = {
    EventKind.STEP_SUCCEEDED: "[green]✓[/]",
    EventKind.STEP_FAILED: "[bold red]✗[/]",
    EventKind.STEP_RETRYING: "[yellow]↻[/]",
    EventKind.WORKER_LOST: "[magenta]☠[/]",
    EventKind.STEP_TIMED_OUT: "[red]⌛[/]",
    EventKind.STEP_SKIPPED: "[dim]-[/]",
    EventKind.CONTRACT_VIOLATED: "[bold red]⚠[/]",
    EventKind.FAULT_INJECTED: "[cyan]⚡[/]",
    EventKind.SLA_BREACHED: "[bold yellow]⏰[/]",
    EventKind.STEP_CANCELLED: "[red]■[/]",
}


class RunDisplay:
    """Prints one line per notable event and keeps a progress bar of finished steps.

    The bar is refreshed from event callbacks (no refresh thread), so worker processes are
    never forked while a display thread holds a lock.
    """

    def __init__(self, bus: EventBus, *, quiet: bool = False) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.console = Console(stderr=True)
        # user text (pipeline, step, run ids, errors) is escaped: never read as markup
        self.quiet = quiet
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
                                 console=self.console, auto_refresh=False, transient=False)
        self.task: Any = None
        self._last = 0.0
        self._unsub = bus.subscribe(self.on_event)

    def close(self) -> None:
        """Stop listening (and finish a bar still on screen)."""
        self._unsub()
        self._end_bar()

    def _end_bar(self) -> None:
        if self.task is not None:
            self.progress.refresh()
            self.progress.stop()
            self.progress.remove_task(self.task)
            self.task = None

    def on_event(self, ev: Event) -> None:
        from rich.markup import escape

        if ev.kind is EventKind.RUN_STARTED:
            steps = list(ev.details.get("steps", []))
            self.progress.start()
            verb = "resuming" if ev.details.get("resumed") else "running"
            self.task = self.progress.add_task(escape(f"{verb} {ev.pipeline}"),
                                               total=len(steps), status=escape(ev.run_id))
            return
        if self.task is None:
            return
        if ev.kind in (EventKind.STEP_SUCCEEDED, EventKind.STEP_SKIPPED, EventKind.STEP_FAILED):
            self.progress.advance(self.task)
        if ev.kind in _STYLE and not self.quiet:
            self.progress.console.print(self._line(ev), highlight=False)
        if ev.kind in (EventKind.RUN_SUCCEEDED, EventKind.RUN_FAILED, EventKind.RUN_CANCELLED):
            self.progress.update(self.task, status=ev.kind.value.removeprefix("run_"))
            self._end_bar()  # the next run (e.g. a chaos run after its baseline) gets its own
            return
        now = time.monotonic()
        if now - self._last > 0.05:
            self._last = now
            self.progress.refresh()

    @staticmethod
    def _line(ev: Event) -> str:
        from rich.markup import escape

        parts = [_STYLE[ev.kind]] + ([escape(ev.step)] if ev.step else [])
        if ev.attempt:
            parts.append(f"[dim]attempt {ev.attempt}[/]")
        if ev.duration is not None:
            parts.append(f"[dim]{ev.duration:.2f}s[/]")
        reason = ev.details.get("reason") or ev.details.get("fault") or ev.details.get("sla")
        if reason and not (ev.error or "").startswith(str(reason)):  # said once, not twice
            parts.append(escape(str(reason)))
        if ev.error:
            parts.append(f"[red]{escape(ev.error[:200])}[/]")
        return " ".join(parts)
