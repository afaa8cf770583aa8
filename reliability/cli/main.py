"""Entry point of the ``reliability`` command.

Each feature area contributes its own commands through a module with a
``register(subparsers)`` function; this module only dispatches and turns our errors into
one clear line and an exit code (2 for bad input, 1 for a failed run), never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from collections.abc import Sequence

from reliability.errors import ReliabilityError, RunError

__all__ = ["main"]

COMMAND_MODULES = (
    "reliability.cli.run",
    "reliability.cli.demo",
    "reliability.cli.contracts",
    "reliability.cli.chaos",
    "reliability.cli.proxy",
    "reliability.cli.sla",
    "reliability.cli.schedule",
    "reliability.cli.verify",
    "reliability.cli.serve",
    "reliability.cli.init",
)


def build_parser() -> argparse.ArgumentParser:
    from reliability import __version__

    parser = argparse.ArgumentParser(
        prog="reliability",
        description="Run pipelines under contracts, chaos and SLA monitoring.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        if not _has_module(name):
            continue
        importlib.import_module(name).register(sub)
    return parser


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args))
    except RunError as exc:
        print(f"run failed: {exc}", file=sys.stderr)
        return 1
    except ReliabilityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a path given on the command line that cannot be used
        logging.getLogger("reliability").debug("file system error", exc_info=True)
        print(f"error: {_os_error(exc)}", file=sys.stderr)
        return 2


def _os_error(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    return (f"{where}{exc.strerror or exc} ({exc.__class__.__name__}). Fix: check that the "
            "path exists, that directories in it are directories, and that it is writable")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
