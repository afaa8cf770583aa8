"""``reliability init [DIR]``: scaffold a project that runs straight away."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    init = sub.add_parser("init", help="scaffold a working project: pipeline, contracts, SLA, "
                                       "schedule, chaos experiment, runbook, CI test")
    init.add_argument("dir", nargs="?", default=".", metavar="DIR",
                      help="where to create it (default: the current directory)")
    init.add_argument("--name", help="pipeline name (default: from the directory name)")
    init.set_defaults(func=cmd_init)


def cmd_init(args: argparse.Namespace) -> int:
    from reliability.scaffold import scaffold

    root = Path(args.dir)
    paths = scaffold(root, args.name)
    for p in paths:
        print(f"created {p}")
    # the contract tests' recorded inputs, from a run in a fresh process: the new project's
    # `pipelines` package must not meet one this process has imported already
    import os
    import subprocess
    import sys

    import reliability

    package = str(Path(reliability.__file__).resolve().parents[1])  # this same toolkit
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (package, os.environ.get("PYTHONPATH", "")) if p)}
    done = subprocess.run([sys.executable, "-m", "reliability", "contracts", "snapshot"],
                          cwd=root, env=env, check=False)
    if done.returncode != 0:
        print("could not record the contract tests' inputs; run `reliability contracts "
              "snapshot` in the project", file=sys.stderr)
        return done.returncode
    where = "" if root.resolve() == Path.cwd().resolve() else f"cd {args.dir} && "
    print(f"\nnext: {where}reliability run && reliability contracts test && "
          "python -m pytest && reliability chaos run chaos/kill-worker.yaml")
    return 0
