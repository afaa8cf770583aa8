"""Process identity that survives pid reuse.

A pid alone names a process only while it lives: once it exits, the kernel hands the number
to the next process. Records that must say "is the process that wrote me still running?"
(a run's runner) store the pid together with :func:`start_token`, the process's start time
since boot plus the boot id, and ask :func:`holds` later.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["holds", "hostname", "start_token"]


def hostname() -> str:
    """This machine's host name (what ``socket.gethostname()`` answers on POSIX)."""
    return os.uname().nodename


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def start_token(pid: int | None = None) -> str | None:
    """``"<boot id>:<start ticks>"`` of ``pid`` (default: this process), or None off Linux
    or when the process does not exist."""
    pid = os.getpid() if pid is None else pid
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    fields = stat[stat.rfind(")") + 2:].split()
    if len(fields) < 20:
        return None
    return f"{_boot_id()}:{fields[19]}"  # field 22 of the whole line: starttime


def holds(pid: int | None, host: str | None, token: str | None) -> bool:
    """Whether the process recorded as (``pid``, ``host``, ``token``) is still alive.

    This process never counts (it is the one asking), nor does a process recorded on another
    host: a WAL ledger lives on one host's disk, so a record from elsewhere is stale. When a
    token was recorded, a live pid whose start token differs is a different process that
    reused the number.
    """
    if not pid or (host and host != hostname()) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if token:
        current = start_token(pid)
        if current is not None and current != token:
            return False
    return True
