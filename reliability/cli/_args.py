"""argparse value types that reject impossible numbers with the rule and the fix.

A bad value makes argparse print the usage line and ``argument --x: <message>`` and exit 2,
before anything is started or recorded.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from reliability.errors import ConfigError

__all__ = ["at_least", "output_dir", "output_file", "port", "positive_float"]


def at_least(minimum: int) -> Callable[[str], int]:
    """An integer type accepting ``minimum`` or more."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a whole number; give an integer >= {minimum}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"{value} is too small; give an integer >= {minimum}")
        return value

    convert.__name__ = f"integer >= {minimum}"
    return convert


def port(text: str) -> int:
    """A TCP port number, 0 meaning any free port."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a port number; give 0-65535 (0: any free port)") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"{value} is not a port number; give 0-65535 (0: any free port)")
    return value


def positive_float(text: str) -> float:
    """A number of seconds greater than zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give e.g. 1.5") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{value:g} must be a finite number > 0; give e.g. 1.5")
    return value


def output_dir(path: str | Path, flag: str) -> Path:
    """Create the directory ``path`` now, so a bad ``flag`` fails before any work is done."""
    p = Path(path)
    blocker = next((d for d in (p, *p.parents) if d.exists() and not d.is_dir()), None)
    if blocker is not None:
        what = "" if blocker == p else f", so {str(p)!r} cannot be created"
        raise ConfigError(f"{str(blocker)!r} is a file, not a directory{what}",
                          path=[flag], fix=f"give {flag} a path under a directory")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the directory {str(p)!r} ({exc.strerror or exc})",
                          path=[flag], fix=f"give {flag} a path you can write to") from None
    return p


def output_file(path: str | Path, flag: str) -> Path:
    """Check ``path`` can be written (its folder is created), before any work is done."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{str(p)!r} is a directory", path=[flag],
                          fix=f"give {flag} a file name, e.g. {p / 'out'}")
    output_dir(p.parent, flag)
    return p
