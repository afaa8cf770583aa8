"""``reliability proxy serve``: run the embedded Toxiproxy-compatible server.

::

    reliability proxy serve [--host 127.0.0.1] [--port 8474] [--config FILE]

``FILE`` uses Toxiproxy's own config format (``toxiproxy-server -config``): a
JSON list of ``{"name", "listen", "upstream"}`` proxies. The API binds loopback
unless ``--host`` says otherwise. Exit codes: 0 after Ctrl-C/SIGTERM, 2 for a
bad config or a port that cannot be bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import Any

from reliability.cli._args import port

__all__ = ["register", "serve"]

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def register(subparsers: Any) -> None:
    """Add the ``proxy`` command group (``proxy serve``) to an argparse subparsers object."""
    group = subparsers.add_parser(
        "proxy", help="embedded Toxiproxy-compatible server",
        description="Run a Toxiproxy-compatible fault-injection proxy server.",
    )
    commands = group.add_subparsers(dest="proxy_command", metavar="COMMAND")
    group.set_defaults(func=lambda _args: _usage(group))
    serve_parser = commands.add_parser(
        "serve", help="serve the Toxiproxy HTTP API until interrupted",
        description="Serve the Toxiproxy 2.x HTTP API; any Toxiproxy client can drive it.",
    )
    serve_parser.add_argument("--host", default="127.0.0.1",
                              help="API bind address (default: 127.0.0.1, loopback only)")
    serve_parser.add_argument("--port", type=port, default=8474,
                              help="API port (default: 8474, Toxiproxy's; 0 picks a free one)")
    serve_parser.add_argument("--config", metavar="FILE",
                              help="Toxiproxy JSON config: a list of proxies to create at start")
    serve_parser.set_defaults(func=serve)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def serve(args: argparse.Namespace) -> int:
    """Handler of ``proxy serve``; returns the process exit code."""
    from reliability.chaos.proxy import AsyncProxyServer, load_config
    from reliability.errors import ReliabilityError

    try:
        proxies = load_config(args.config) if args.config else []
        entries = [{"name": p.name, "listen": p.listen, "upstream": p.upstream,
                    "enabled": p.enabled} for p in proxies]
        server = AsyncProxyServer(args.host, args.port, proxies=entries)
        if args.host not in _LOOPBACK:
            print(f"warning: the proxy API on {args.host} is reachable from the network "
                  "and has no authentication", file=sys.stderr)
        asyncio.run(_serve_until_signal(server))
    except ReliabilityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


async def _serve_until_signal(server: Any) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with server:
        count = len(server.registry)
        print(f"toxiproxy-compatible API on {server.url} ({count} proxies); Ctrl-C stops",
              file=sys.stderr, flush=True)
        await stop.wait()
