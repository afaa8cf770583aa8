"""One background thread that runs callbacks at wall-clock times, cancellable by key."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Hashable

__all__ = ["TimerThread"]

log = logging.getLogger("reliability.sla")


class TimerThread:
    """``schedule(due, key, fn)`` runs ``fn()`` at Unix time ``due`` unless ``cancel(key)``.

    Scheduling a key again replaces its previous timer. Callbacks run on this thread, one
    at a time; one that raises is logged and the thread carries on.
    """

    def __init__(self, name: str = "reliability-sla-timers",
                 clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, Hashable]] = []
        self._live: dict[Hashable, tuple[int, Callable[[], None]]] = {}
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def schedule(self, due: float, key: Hashable, fn: Callable[[], None]) -> None:
        with self._cond:
            seq = next(self._seq)
            self._live[key] = (seq, fn)
            heapq.heappush(self._heap, (due, seq, key))
            self._cond.notify()

    def cancel(self, key: Hashable) -> None:
        with self._cond:
            self._live.pop(key, None)

    def cancel_where(self, pred: Callable[[Hashable], bool]) -> None:
        with self._cond:
            for key in [k for k in self._live if pred(k)]:
                del self._live[key]

    def pending(self) -> int:
        with self._cond:
            return len(self._live)

    def _next_due(self) -> Callable[[], None] | None:
        """Wait for the next live timer that is due; None when stopped."""
        with self._cond:
            while not self._stopped:
                while self._heap and self._live.get(self._heap[0][2], (None,))[0] != \
                        self._heap[0][1]:
                    heapq.heappop(self._heap)  # cancelled or replaced
                if not self._heap:
                    self._cond.wait()
                    continue
                due, _, key = self._heap[0]
                wait = due - self._clock()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                return self._live.pop(key)[1]
            return None

    def _run(self) -> None:
        while (fn := self._next_due()) is not None:
            try:
                fn()
            except Exception:
                log.exception("SLA timer callback %r failed", fn)
