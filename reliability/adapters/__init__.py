"""Run pipelines under other orchestrators with our contracts, chaos, ledger and SLAs.

``reliability.adapters.airflow``, ``.prefect``, ``.dagster``, ``.metaflow``, ``.kfp`` and
``.zenml`` (extras of the same names) translate a :class:`~reliability.pipeline.Pipeline` into the
host's graph; all call the shared step wrapper in :mod:`reliability.adapters.core`.
"""

from __future__ import annotations

from reliability.adapters.core import (
    AttemptFailed,
    AttemptNotRetryable,
    HostAttempt,
    Ref,
    StepBridge,
    host_run_id,
)

__all__ = ["AttemptFailed", "AttemptNotRetryable", "HostAttempt", "Ref", "StepBridge",
           "host_run_id"]
