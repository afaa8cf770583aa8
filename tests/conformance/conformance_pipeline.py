"""The pipeline every executor runs in the conformance suite.

Steps leave ``<signal_dir>/<step>.<attempt>.pid`` (their process id) as they start, so a
test can wait for an attempt and kill the process running it; ``fail_step`` raises on its
first ``fail_times`` attempts, ``slow_step`` sleeps ``slow_seconds`` on its first attempt.
Outputs are deterministic bytes, so every executor must produce the same digests.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from pydantic import BaseModel

from reliability import Pipeline, Retry, StepContext


class Params(BaseModel):
    signal_dir: str = ""
    fail_step: str = ""
    fail_times: int = 0
    slow_step: str = ""
    slow_seconds: float = 0.0
    rows: int = 5000


class Flaky(RuntimeError):
    """A transient failure the retry policy retries."""


def _enter(ctx: StepContext, params: Params) -> None:
    if params.signal_dir:
        marker = Path(params.signal_dir) / f"{ctx.step}.{ctx.attempt}.pid"
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(str(os.getpid()))
        tmp.replace(marker)
    if ctx.step == params.fail_step and ctx.attempt <= params.fail_times:
        raise Flaky(f"{ctx.step} fails on attempt {ctx.attempt}")
    if ctx.step == params.slow_step and ctx.attempt == 1:
        time.sleep(params.slow_seconds)


RETRY = Retry(attempts=3, backoff=0.3, jitter=0.0, retry_on=(Flaky,))
pipeline = Pipeline("conformance", params=Params)


@pipeline.step(retry=RETRY, timeout=30)
def load(ctx: StepContext, params: Params) -> bytes:
    _enter(ctx, params)
    return b"".join(i.to_bytes(4, "little") for i in range(params.rows))


@pipeline.step(retry=RETRY, timeout=30)
def digest(ctx: StepContext, params: Params, load: bytes) -> dict[str, object]:
    _enter(ctx, params)
    return {"sha": hashlib.sha256(load).hexdigest(), "n": len(load) // 4}


@pipeline.step(retry=RETRY, timeout=30)
def stats(ctx: StepContext, params: Params, load: bytes) -> list[int]:
    _enter(ctx, params)
    return [len(load), sum(load) % 9973]


@pipeline.step(retry=RETRY, timeout=30)
def report(ctx: StepContext, params: Params, digest: dict[str, object],
           stats: list[int]) -> str:
    _enter(ctx, params)
    return f"{digest['sha']}:{digest['n']}:{stats}"


timed = Pipeline("conformance-timeout", params=Params)


@timed.step(retry=Retry(attempts=2, backoff=0, retry_on=(Flaky,)), timeout=1.5)
def stuck(ctx: StepContext, params: Params) -> str:
    _enter(ctx, params)  # slow_step=stuck: the first attempt outlives its timeout
    return "done"
