"""``reliability serve``: runs, runbooks, alerts, chaos reports and /metrics of one home."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from reliability.cli._args import port, positive_float
from reliability.errors import ConfigError

__all__ = ["register"]


def register(sub: Any) -> None:
    serve = sub.add_parser(
        "serve", help="web pages for on call: runs, runbooks with evidence, alerts "
                      "(Alertmanager webhook), chaos reports and /metrics")
    serve.add_argument("--home", help="runner home holding ledger.db (default: project)")
    serve.add_argument("--host", default=None,
                       help="bind address (default: the project's serve.host, 127.0.0.1)")
    serve.add_argument("--port", type=port, default=None,
                       help="port (default: the project's serve.port, 8080; 0: any free)")
    serve.add_argument("--url", help="where users and Alertmanager reach this server "
                                     "(default: the project's serve.url, else http://HOST:PORT)")
    serve.add_argument("--interval", type=positive_float, default=1.0,
                       help="ledger poll seconds for /metrics")
    serve.add_argument("--sla", metavar="FILE", help="SLA YAML file for deadline and budget "
                                                     "gauges (default: the project's)")
    serve.add_argument("--no-metrics", action="store_true", help="do not serve /metrics")
    serve.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from reliability.project import find_project
    from reliability.sla.spec import load_slas
    from reliability.web.server import serve

    project = find_project()
    cfg = project.spec.serve
    home = Path(args.home) if args.home else project.home
    sla_file = Path(args.sla) if args.sla else project.sla_file
    if args.sla and not sla_file.is_file():  # type: ignore[union-attr]
        raise ConfigError(f"no SLA file {args.sla}", path=("--sla",),
                          fix="pass an existing SLA YAML file")
    slas = load_slas(sla_file) if sla_file is not None and sla_file.is_file() else None
    server = serve(home, host=args.host or cfg.host,
                   port=cfg.port if args.port is None else args.port,
                   url=args.url or cfg.url, runbooks_dir=project.runbooks_dir, slas=slas,
                   metrics=not args.no_metrics, interval=args.interval)
    print(f"serving {server.url} (home {home}); Alertmanager webhook "
          f"{server.app.base_url}/alerts/webhook; Ctrl-C stops", flush=True)
    if server.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"note: listening on {server.host}, beyond this host; the pages and the webhook "
              "ask for no login, so put an authenticating proxy in front", file=sys.stderr,
              flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        server.close()
