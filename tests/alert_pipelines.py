"""A pipeline that breaks in every way a generated alert covers (``mode=bad``), or runs clean.

``mode=bad``: ``load`` outlives its max_duration and fails, ``crashy`` loses its worker once
(SIGKILL) and succeeds on the retry, ``score`` writes one payload that fails five checks of
its contract. The run outlives its own max_duration and finish_by, and fails.
"""

from __future__ import annotations

import os
import signal
import time

from pydantic import BaseModel

from reliability import Pipeline, Retry, StepContext

SCORE_CONTRACT = """\
pipeline: alertdemo
step: score
direction: output
kind: metrics
metrics:
  fields:
""" + "".join(f"    {f}: {{type: float, min: 0, max: 1}}\n" for f in "abcde")

SLAS = """\
pipeline: alertdemo
run:
  max_duration: 1.5s
  finish_by: {offset: 1s, relative_to: run_start}
  freshness: 2s
  success_rate: {target: 0.5, window: 1d}
steps:
  load:
    max_duration: 1s
    success_rate: {target: 0.5, window: 1d}
"""


class Params(BaseModel):
    mode: str = "ok"
    slow: float = 3.0
    gate: str = ""  # a file: ``load`` waits for it first (the test opens it when scraped)


pipeline = Pipeline("alertdemo", params=Params)


@pipeline.step
def load(params: Params) -> int:
    deadline = time.monotonic() + 120
    while params.gate and not os.path.exists(params.gate) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(params.slow)
    if params.mode == "bad":
        raise RuntimeError("planted failure")
    return 1


@pipeline.step(retry=Retry(attempts=2, backoff=0))
def crashy(ctx: StepContext, params: Params) -> int:
    if params.mode == "bad" and ctx.attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return 2


@pipeline.step
def score(params: Params) -> dict[str, float]:
    value = 5.0 if params.mode == "bad" else 0.5
    return dict.fromkeys("abcde", value)
