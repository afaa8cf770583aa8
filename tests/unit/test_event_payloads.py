"""Every event kind has a typed payload; the payload types load when first asked for, so a
process that only records events (a host's task process) never builds them."""

from __future__ import annotations

import subprocess
import sys

from reliability.events import PAYLOADS, Event, EventKind, Payload


def test_every_kind_has_a_payload_type_keeping_unknown_keys_in_extra() -> None:
    assert set(PAYLOADS) == set(EventKind)
    assert all(issubclass(t, Payload) for t in PAYLOADS.values())
    ev = Event(EventKind.STEP_RETRYING, "p", "r", step="s", attempt=1,
               details={"delay": 2.5, "next_attempt": 2, "host": "h1"})
    payload = ev.payload
    assert type(payload).__name__ == "StepRetrying"
    assert (payload.delay, payload.next_attempt, dict(payload.extra)) == (  # type: ignore[attr-defined]
        2.5, 2, {"host": "h1"})


def test_the_payload_types_load_on_first_use() -> None:
    code = ("import sys\n"
            "from reliability.events import Event, EventKind\n"
            "ev = Event(EventKind.CUSTOM, 'p', 'r', details={'name': 'rows', 'data': {'n': 3}})\n"
            "before = 'reliability._payloads' in sys.modules\n"
            "name = ev.payload.name\n"
            "print(before, 'reliability._payloads' in sys.modules, name)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.split() == ["False", "True", "rows"]
