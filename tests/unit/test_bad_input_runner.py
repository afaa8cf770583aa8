"""Bad run inputs: unknown parameters, broken intervals, unusable homes, impossible workers."""

from __future__ import annotations

from pathlib import Path

import pytest
from sample_pipelines import chain

from reliability.errors import DefinitionError, LedgerError, StorageError
from reliability.pipeline import DataInterval
from reliability.runner import Ledger, Runner
from reliability.runner.store import ArtifactStore


def test_a_misspelt_parameter_is_an_error_with_a_suggestion() -> None:
    with pytest.raises(DefinitionError, match=r"no parameter 'rowz'.*did you mean 'rows'"):
        chain.make_params({"rowz": 3})
    assert chain.make_params({"rows": 3}).rows == 3


@pytest.mark.parametrize(("text", "needle"), [
    ("garbage", "exactly one '/'"),
    ("2026-01-01T00:00:00+00:00/2026-01-02/x", "exactly one '/'"),
    ("2026-01-02T00:00:00+00:00/2026-01-01T00:00:00+00:00", "must be after start"),
])
def test_interval_errors_say_what_is_wrong_once(text: str, needle: str) -> None:
    with pytest.raises(DefinitionError, match=needle) as info:
        DataInterval.parse(text)
    assert str(info.value).count("Fix:") == 1


def test_home_under_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("")
    # the same cause is the same error, whichever part of the home meets it first
    with pytest.raises(StorageError, match="cannot create the artifact store"):
        ArtifactStore(blocker / "home" / "store")
    with pytest.raises(StorageError, match="cannot create the runner home"):
        Ledger(blocker / "home" / "ledger.db")


def test_ledger_path_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "ledger.db").mkdir()
    with pytest.raises(LedgerError, match="is a directory"):
        Ledger(tmp_path / "ledger.db")


@pytest.mark.parametrize("workers", [0, -2])
def test_impossible_worker_counts_fail_before_anything_is_recorded(
        tmp_path: Path, workers: int) -> None:
    with pytest.raises(DefinitionError, match=f"workers={workers} must be at least 1"):
        Runner(chain, home=tmp_path / "home", workers=workers)
    assert not (tmp_path / "home" / "ledger.db").exists()
