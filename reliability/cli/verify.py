"""``reliability verify``: check the artifact store against the ledger (an fsck).

Every committed output the ledger names is re-hashed; objects whose bytes no longer match
their name are moved to ``quarantine/corrupt/`` (so no run can trust them), missing ones are
listed with the runs that need them. Exit status 0 when everything is intact, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser("verify", help="re-hash the artifact store against the ledger; "
                       "quarantine what is corrupt")
    p.add_argument("--home", help="ledger and artifact store directory (default: project home)")
    p.add_argument("--store", metavar="URL",
                   help="the artifact store (default: store: of reliability.yaml, else "
                   "HOME/store); a directory or s3://bucket/prefix")
    p.add_argument("--run", metavar="RUN", help="only the outputs of this run")
    p.add_argument("--no-quarantine", action="store_true",
                   help="report corrupt objects, leave them in place")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    from reliability.project import find_project
    from reliability.runner.ledger import Ledger
    from reliability.runner.store import fsck, open_store

    project = find_project()
    home = Path(args.home) if args.home else project.home
    db = home / "ledger.db"
    if not db.exists():
        from reliability.errors import LedgerError

        raise LedgerError(f"no run ledger at {db}. Fix: run a pipeline first "
                          "(`reliability run`), or pass --home")
    store = open_store(args.store) if args.store else project.open_store(home)
    refs: dict[str, list[tuple[str, str]]] = {}
    with Ledger(db) as led:
        runs = [led.get_run(args.run)] if args.run else led.list_runs(limit=1 << 62)
        for rec in runs:
            for row in led.steps(rec.run_id):
                if row["output_hash"]:
                    refs.setdefault(row["output_hash"], []).append((rec.run_id, row["step"]))
    report = fsck(store, refs, quarantine=not args.no_quarantine, all_objects=not args.run)
    if args.json:
        print(json.dumps({
            "ok": report.ok, "checked": report.checked, "store": store.url,
            "corrupt": [{"digest": d, "used_by": [f"{r}:{s}" for r, s in uses],
                         "quarantined": report.quarantined.get(d)}
                        for d, uses in report.corrupt],
            "missing": [{"digest": d, "used_by": [f"{r}:{s}" for r, s in uses]}
                        for d, uses in report.missing],
            "unreferenced": report.unreferenced, "resume": report.runs_to_resume()},
            indent=2))
        return 0 if report.ok else 1
    for digest, uses in report.corrupt:
        where = report.quarantined.get(digest)
        moved = f"  -> quarantined to {where}" if where else "  (left in place)"
        print(f"corrupt  {digest}  used by {_uses(uses)}{moved}")
    for digest, uses in report.missing:
        print(f"missing  {digest}  used by {_uses(uses)}")
    intact = report.checked - len(report.corrupt)
    print(f"{intact} objects intact, {len(report.corrupt)} corrupt, {len(report.missing)} "
          f"missing, {len(report.unreferenced)} not named by the ledger ({store.url})")
    if not report.ok:
        cmds = ", ".join(f"`reliability resume {r}`" for r in report.runs_to_resume())
        print(f"Fix: {cmds or '`reliability run`'} recomputes what is corrupt or missing")
    return 0 if report.ok else 1


def _uses(uses: list[tuple[str, str]]) -> str:
    return ", ".join(f"{r}:{s}" for r, s in uses) or "no run"
