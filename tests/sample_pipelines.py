"""Small pipelines the runner tests drive in real worker processes."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from pydantic import BaseModel

from reliability import Pipeline, Retry, StepContext


class ChainParams(BaseModel):
    signal_dir: str = ""      # steps touch <dir>/<step>.<attempt>.started when they begin
    slow_step: str = ""       # this step sleeps `slow_seconds` on its first attempt
    slow_seconds: float = 0.0
    rows: int = 2000


def _started(ctx: StepContext, params: ChainParams) -> None:
    if params.signal_dir:
        marker = Path(params.signal_dir) / f"{ctx.step}.{ctx.attempt}.started"
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(str(os.getpid()))
        tmp.replace(marker)  # watchers never see the marker without its pid
    if ctx.step == params.slow_step and ctx.attempt == 1:
        time.sleep(params.slow_seconds)


chain = Pipeline("chain", params=ChainParams)


@chain.step(retry=Retry(attempts=3, backoff=0))
def source(ctx: StepContext, params: ChainParams) -> bytes:
    _started(ctx, params)
    return b"".join(i.to_bytes(4, "little") for i in range(params.rows))


@chain.step(retry=Retry(attempts=3, backoff=0))
def transform(ctx: StepContext, params: ChainParams, source: bytes) -> dict[str, object]:
    _started(ctx, params)
    return {"sha": hashlib.sha256(source).hexdigest(), "n": len(source) // 4}


@chain.step(retry=Retry(attempts=3, backoff=0))
def side(ctx: StepContext, params: ChainParams, source: bytes) -> list[int]:
    _started(ctx, params)
    return [len(source), sum(source) % 9973]


@chain.step(retry=Retry(attempts=3, backoff=0))
def sink(ctx: StepContext, params: ChainParams, transform: dict[str, object],
         side: list[int]) -> str:
    _started(ctx, params)
    return f"{transform['sha']}:{transform['n']}:{side}"


hang = Pipeline("hang")


@hang.step(timeout=0.5, retry=Retry(attempts=2, backoff=0))
def stuck() -> None:
    time.sleep(3600)


@hang.step
def after_stuck(stuck: None) -> int:
    return 1


class Boom(RuntimeError):
    pass


flaky = Pipeline("flaky")


@flaky.step(retry=Retry(attempts=4, backoff=0.01, retry_on=(Boom,)))
def wobbly(ctx: StepContext) -> int:
    if ctx.attempt < 3:
        raise Boom(f"attempt {ctx.attempt} fails")
    return ctx.attempt


@flaky.step(retry=Retry(attempts=4, backoff=0, retry_on=(Boom,)))
def fatal() -> int:
    raise ValueError("not a retryable error")


@flaky.step
def after_fatal(fatal: int) -> int:
    return fatal + 1


@flaky.step
def independent() -> str:
    return "still runs"


markup = Pipeline("markup")


@markup.step(name="shout")
def shout() -> int:
    raise ValueError("closing [/bold] and [link=https://example.com]a link[/link] [red]red")
