"""The reference pipeline's outputs are byte-identical whichever worker runs each step."""

from __future__ import annotations

import os
import signal
import zipfile
from pathlib import Path
from typing import Any

import pytest

from pipelines.reference import pipeline
from reliability import Runner, StepContext, StepHook
from reliability.pipeline import StepSpec

pytestmark = pytest.mark.integration


class KillEvaluateOnce(StepHook):
    """SIGKILLs the worker at the start of evaluate's first attempt: evaluate and package
    then run on fresh worker processes, not the ones that loaded the model before."""

    def before(self, ctx: StepContext, spec: StepSpec, inputs: dict[str, Any]
               ) -> dict[str, Any]:
        if ctx.step == "evaluate" and ctx.attempt == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return inputs


def test_package_is_byte_identical_after_a_worker_kill(tmp_path: Path) -> None:
    clean = Runner(pipeline, home=tmp_path / "clean", workers=2).run()
    chaos_runner = Runner(pipeline, home=tmp_path / "chaos", workers=2,
                          hooks=[KillEvaluateOnce()])
    chaos = chaos_runner.run()
    assert clean.ok and chaos.ok
    statuses = [a["status"] for a in chaos_runner.ledger.attempts(chaos.run_id, "evaluate")]
    assert statuses == ["worker_lost", "succeeded"]
    assert chaos.outputs == clean.outputs  # package included
    bundle = chaos_runner.store.path(chaos.outputs["package"])
    with zipfile.ZipFile(bundle) as zf:  # the model in the bundle is train's committed bytes
        model = zf.read("model.pkl")
    assert model == chaos_runner.store.path(chaos.outputs["train"]).read_bytes()
