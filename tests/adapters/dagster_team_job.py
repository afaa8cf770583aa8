"""A team's own Dagster job for the tests of ``reliable`` on the multiprocess executor (its
step processes rebuild the job from this module): ``rows`` -> ``clean`` (under
``@reliable``), whose first try marks that it runs and waits to be killed."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def team_job(home: str) -> Any:
    import dagster as dg

    from reliability.adapters.dagster import PARAMS_RESOURCE, ledger_hooks, reliable, resources

    @dg.op
    def rows() -> list[float]:
        return [0.1, 0.2, 0.3]

    @reliable(home=home)
    @dg.op(retry_policy=dg.RetryPolicy(max_retries=2), required_resource_keys={PARAMS_RESOURCE})
    def clean(context, rows: list[float]) -> dict[str, float]:  # type: ignore[no-untyped-def]
        signals = getattr(context.resources, PARAMS_RESOURCE).get("signal_dir")
        if signals and context.retry_number == 0:
            marker = Path(signals) / "clean.running"
            marker.with_suffix(".tmp").write_text(str(os.getpid()))
            marker.with_suffix(".tmp").replace(marker)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not (Path(signals) / "release").exists():
                time.sleep(0.05)
        return {"n": float(len(rows)), "total": sum(rows)}

    @dg.job(name="guarded", resource_defs=resources(), hooks=ledger_hooks(home=home))
    def guarded() -> None:
        clean(rows())

    return guarded
