"""On Dask, an attempt's result leaves its worker in the same message as the report that its
task finished, so the scheduler starts the step queued behind it at once: a result sent on
its own would hold that report back for the worker stream's send interval, on every step of
a chain. Holds for attempts that fail as for those that succeed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reliability import Pipeline
from reliability.runner import Runner

pytest.importorskip("distributed")
pytestmark = pytest.mark.integration


def first() -> int:
    return 1


def second(first: int) -> int:
    return first + 1


def third(second: int) -> int:
    return second + 1


def broken(third: int) -> int:
    raise ValueError("no")


def _batches(dask_worker: Any) -> list[list[tuple[str, str]]]:
    """(op, task key) of each message in the batches this worker sent the scheduler."""
    out = []
    for payload in list(dask_worker.batched_stream.recent_message_log):
        if isinstance(payload, list):
            out.append([(m.get("op", ""), str(m.get("key") or (m.get("msg") or {}).get("key")))
                        for m in payload if isinstance(m, dict)])
    return out


def test_each_result_travels_with_its_task_finished_report(tmp_path: Path) -> None:
    from reliability.runner import dask_executor

    p = Pipeline("result-with-completion")
    p.add(first)
    p.add(second)
    p.add(third)
    p.add(broken)
    runner = Runner(p, home=tmp_path / "home", executor="dask", workers=2)
    res = runner.run()
    assert res.outputs.keys() == {"first", "second", "third"}
    assert "broken" in res.failed and "ValueError: no" in res.failed["broken"]

    client = dask_executor._CONNECTIONS["local:2"].client
    sent = [(batch, key) for batches in client.run(_batches).values() for batch in batches
            for op, key in batch if op == "log-event" and key.startswith("reliability-")]
    # the cluster is shared with earlier runs in this process: this run's attempts only
    # (keys "reliability-attempt-<run token>-<step>-...")
    tokens = {key.split("-")[2] for _, key in sent if "-broken-" in key}
    assert len(tokens) == 1, sent
    mine = [(batch, key) for batch, key in sent if key.split("-")[2] in tokens]
    assert len(mine) == 4  # one result per attempt
    for batch, key in mine:
        # the scheduler reads them in order: the result first, then the task's end
        assert batch.index(("log-event", key)) < batch.index(("task-finished", key)), batch
