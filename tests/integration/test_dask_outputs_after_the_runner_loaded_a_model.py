"""The reference pipeline gives the same digests on the local executor and on Dask even when
the runner's process has unpickled a trained model first (a notebook inspecting the last run,
the contract tests' recorded inputs). Local workers fork from that process, Dask workers
start fresh: a model's pickle must not depend on which of them trained it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import subprocess_env

pytest.importorskip("distributed")
pytestmark = pytest.mark.integration

# A fresh interpreter, so the run before the model is loaded starts from a process that has
# never seen one, whatever ran in the test session before.
_SCRIPT = """
import json, sys
from pathlib import Path
from pipelines.reference import pipeline as reference
from reliability.runner import Runner
from reliability.runner.dask_executor import close_clusters

home = Path(sys.argv[1])
before = Runner(reference, home=home / "before", workers=2)
first = before.run()
model = before.store.load(first.outputs["train"], "pickle")  # inspect the trained model
again = Runner(reference, home=home / "again", workers=2).run()
dask = Runner(reference, home=home / "dask", executor="dask", workers=2).run()
close_clusters()
print(json.dumps({"model": type(model).__name__, "runs": [
    {"ok": r.ok, "failed": r.failed, "outputs": r.outputs} for r in (first, again, dask)]}))
"""


def test_reference_digests_do_not_change_after_the_runner_unpickled_a_model(
        tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", _SCRIPT, str(tmp_path)],
                          env=subprocess_env(), capture_output=True, text=True, timeout=240,
                          check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["model"] == "LogisticRegression"
    first, again, dask = report["runs"]
    assert first["ok"] and again["ok"] and dask["ok"], (first, again, dask)
    assert again["outputs"] == first["outputs"]  # local workers forked after the load
    assert dask["outputs"] == first["outputs"]
