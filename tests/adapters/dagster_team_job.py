"""A team's own Dagster jobs for the kill tests on the multiprocess executor (their step
processes rebuild the job from this module): ``rows`` -> ``clean``, whose first try marks
that it runs and waits to be killed -- under ``@reliable`` in :func:`team_job`, left
unwrapped (recorded by our ledger hooks alone) in :func:`hooked_job`."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def _hold(context: Any) -> None:
    """On the op's first try, mark that it runs (with its pid) and wait to be killed."""
    from reliability.adapters.dagster import PARAMS_RESOURCE

    signals = getattr(context.resources, PARAMS_RESOURCE).get("signal_dir")
    if not signals or context.retry_number != 0:
        return
    marker = Path(signals) / "clean.running"
    marker.with_suffix(".tmp").write_text(str(os.getpid()))
    marker.with_suffix(".tmp").replace(marker)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (Path(signals) / "release").exists():
        time.sleep(0.05)


def team_job(home: str, *, wrapped: bool = True) -> Any:
    import dagster as dg

    from reliability.adapters.dagster import PARAMS_RESOURCE, ledger_hooks, reliable, resources

    @dg.op
    def rows() -> list[float]:
        return [0.1, 0.2, 0.3]

    @dg.op(retry_policy=dg.RetryPolicy(max_retries=2), required_resource_keys={PARAMS_RESOURCE})
    def clean(context, rows: list[float]) -> dict[str, float]:  # type: ignore[no-untyped-def]
        _hold(context)
        return {"n": float(len(rows)), "total": sum(rows)}

    op = reliable(home=home)(clean) if wrapped else clean

    @dg.job(name="guarded", resource_defs=resources(), hooks=ledger_hooks(home=home))
    def guarded() -> None:
        op(rows())

    return guarded


def hooked_job(home: str) -> Any:
    """:func:`team_job` whose ``clean`` is not wrapped: only our ledger hooks record it."""
    return team_job(home, wrapped=False)
