"""The recorded inputs of contract tests: what is recorded, and clear errors when the
recording is missing, tampered with or no longer covers the contracts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipelines.reference import pipeline as reference
from reliability.contracts import load_contracts
from reliability.contracts.snapshot import load_snapshot, needed_steps, snapshot_dir
from reliability.contracts.suite import run_suite
from reliability.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
RECORDED = ROOT / "contracts" / "reference" / "snapshot"


@pytest.fixture(scope="module")
def contracts():  # type: ignore[no-untyped-def]
    return load_contracts(ROOT / "contracts", reference)


def test_the_reference_snapshot_holds_what_its_contracts_need(contracts, tmp_path: Path
                                                              ) -> None:  # type: ignore[no-untyped-def]
    assert snapshot_dir(ROOT / "contracts", "reference") == RECORDED
    assert needed_steps(reference, contracts) == ["ingest", "validate", "featurize", "train",
                                                  "evaluate", "package"]
    snap = load_snapshot(RECORDED, reference, contracts, tmp_path)
    assert snap.params["source"] == "builtin" and snap.params["seed"] == 7
    assert set(snap.outputs) == set(needed_steps(reference, contracts))
    # a file output is a copy in the scratch dir: corrupting it never touches the recording
    assert snap.outputs["package"].parent.parent == tmp_path
    assert sum(f.stat().st_size for f in RECORDED.iterdir()) < 200_000


def test_a_changed_recorded_file_is_refused(contracts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    copy = tmp_path / "snapshot"
    shutil.copytree(RECORDED, copy)
    (copy / "evaluate.json").write_text('{"accuracy": 1.0}')
    with pytest.raises(ConfigError, match=r"evaluate.*changed since it was recorded") as err:
        load_snapshot(copy, reference, contracts, tmp_path / "scratch")
    assert "evaluate.json" in str(err.value) and "reliability contracts snapshot" in str(err.value)


def test_a_missing_snapshot_says_how_to_record_it(contracts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="no recorded inputs") as err:
        load_snapshot(tmp_path / "nothing", reference, contracts, tmp_path)
    assert "reliability contracts snapshot" in str(err.value)
    result = run_suite(reference, contracts, max_examples=2, missing=str(err.value))
    [row] = [r for r in result.rows if r.name == "recorded inputs"]
    assert row.status == "failed" and "reliability contracts snapshot" in row.detail
    assert not result.ok
