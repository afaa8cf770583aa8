"""Contracts enforced by the real runner: violations stop downstream steps and quarantine."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from pydantic import BaseModel

from reliability import Pipeline, Retry, Runner
from reliability.contracts import ContractHook, check_wiring, load_contracts

pytestmark = pytest.mark.integration


class Params(BaseModel):
    bad: bool = False


pipe = Pipeline("ctest", params=Params)


@pipe.step(retry=Retry(attempts=3, backoff=0.01))
def source(params: Params) -> pd.DataFrame:
    x = [0.1, 0.2, 0.3, 0.4]
    if params.bad:
        x[2] = 5.0
    return pd.DataFrame({"id": [1, 2, 3, 4], "x": x})


@pipe.step
def double(source: pd.DataFrame) -> pd.DataFrame:
    return source.assign(x=source["x"] * 2)


@pipe.step
def sink(double: pd.DataFrame) -> dict[str, int]:
    return {"rows": len(double)}


FRAME = """
schema:
  columns:
    id: {dtype: int64, unique: true}
    x: {dtype: float64, in_range: {min_value: 0, max_value: %s}}
"""


def _contracts(tmp_path: Path) -> Path:
    d = tmp_path / "contracts" / "ctest"
    d.mkdir(parents=True)
    (d / "source.output.yaml").write_text(
        "pipeline: ctest\nstep: source\ndirection: output\n" + FRAME % 1)
    (d / "double.input.yaml").write_text(
        "pipeline: ctest\nstep: double\ndirection: input\ninput: source\n" + FRAME % 1)
    (d / "double.output.yaml").write_text(
        "pipeline: ctest\nstep: double\ndirection: output\n" + FRAME % 2)
    return tmp_path / "contracts"


def test_violation_fails_step_quarantines_and_skips_downstream(tmp_path: Path,
                                                               home: Path) -> None:
    contracts = load_contracts(_contracts(tmp_path), pipe)
    check_wiring(pipe, contracts)
    runner = Runner(pipe, home=home, workers=2, hooks=[ContractHook(contracts)])
    res = runner.run({"bad": True})
    assert res.status == "failed" and "source" in res.failed
    assert set(res.skipped) == {"double", "sink"}
    steps = {s["step"]: s["status"] for s in runner.ledger.steps(res.run_id)}
    assert steps == {"source": "failed", "double": "upstream_failed", "sink": "upstream_failed"}
    attempts = runner.ledger.attempts(res.run_id, "source")
    assert [a["status"] for a in attempts] == ["contract_violated"]  # never retried
    assert runner.ledger.commits(res.run_id) == []  # nothing committed downstream or at all
    quarantined = runner.store.quarantine / res.run_id / "source.1.out"
    assert quarantined.is_file()
    bad = pd.read_pickle(quarantined)
    assert bad["x"].max() == 5.0
    [event] = runner.ledger.events(res.run_id, "contract_violated")
    failures = event["details"]["failures"]
    assert failures and all(set(f) >= {"contract", "column", "check", "failure_count",
                                       "failure_cases"} for f in failures)
    hit = [f for f in failures if f["column"] == "x"]
    assert hit and hit[0]["failure_count"] == 1 and 5.0 in hit[0]["failure_cases"]
    assert runner.ledger.events(res.run_id, "step_skipped")


def test_clean_run_emits_contract_checked(tmp_path: Path, home: Path) -> None:
    contracts = load_contracts(_contracts(tmp_path), pipe)
    runner = Runner(pipe, home=home, workers=2, hooks=[ContractHook(contracts)])
    res = runner.run({"bad": False})
    assert res.status == "succeeded"
    checked = runner.ledger.events(res.run_id, "contract_checked")
    seen = {(e["details"]["contract"], e["details"]["direction"]) for e in checked}
    assert seen == {("ctest.source.output", "output"), ("ctest.double.input.source", "input"),
                    ("ctest.double.output", "output")}
    assert all(e["details"]["rows"] == 4 and e["details"]["seconds"] >= 0 for e in checked)


def test_interface_annotations_checked_in_worker(tmp_path: Path, home: Path) -> None:
    p = Pipeline("iface")

    @p.step
    def make() -> pd.DataFrame:
        return {"not": "a frame"}  # type: ignore[return-value]

    @p.step
    def use(make: pd.DataFrame) -> int:
        return len(make)

    runner = Runner(p, home=home, workers=1, hooks=[ContractHook()])
    res = runner.run()
    assert res.status == "failed" and res.skipped == ("use",)
    assert "DataFrame" in res.failed["make"]
    assert (runner.store.quarantine / res.run_id / "make.1.out").is_file()
