"""The pytest plugin, run with pytester on a copy of the reference project."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _importable_pipelines(monkeypatch: pytest.MonkeyPatch) -> None:
    # pytester runs pytest in a subprocess: in-process runs would re-import numpy's C
    # extensions when pytester restores sys.modules
    monkeypatch.setenv("PYTHONPATH", str(ROOT))


def _project(pytester: pytest.Pytester) -> Path:
    shutil.copytree(ROOT / "contracts" / "reference", pytester.path / "contracts" / "reference")
    pytester.makefile(".yaml", reliability="pipeline: pipelines.reference:pipeline\n")
    pytester.makeini("[pytest]\n")
    return pytester.path / "contracts" / "reference"


def test_inert_unless_enabled(pytester: pytest.Pytester) -> None:
    _project(pytester)
    pytester.makepyfile("def test_x():\n    assert True\n")
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=1)


def test_passes_on_reference_pipeline(pytester: pytest.Pytester) -> None:
    _project(pytester)
    result = pytester.runpytest_subprocess("--reliability-contracts", "--reliability-max-examples=5",
                                "-p", "no:randomly", "-m", "reliability_contract")
    result.assert_outcomes(passed=11)
    result.stdout.fnmatch_lines(["*contract mutation kill rate*", "overall: * (100%)"])


def test_fails_when_a_contract_is_broken(pytester: pytest.Pytester) -> None:
    d = _project(pytester)
    p = d / "validate.output.yaml"
    # the output contract now demands a column `validate` never writes
    p.write_text(p.read_text().replace("  strict: true", "    batch: {dtype: str}\n  strict: true"))
    result = pytester.runpytest_subprocess("--reliability-contracts", "--reliability-max-examples=5",
                                "-p", "no:randomly")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 2
    result.stdout.fnmatch_lines(["*FAILED*generated?validate?*"])
    result.stdout.fnmatch_lines(["*batch: column_in_dataframe failed*"])
    result.stdout.fnmatch_lines(["*recorded step outputs break a contract*"])


def test_a_malformed_contract_file_is_a_usage_error_not_a_traceback(
        pytester: pytest.Pytester) -> None:
    d = _project(pytester)
    (d / "train.input.yaml").write_text("step: train\ncolumns: [unclosed\n")
    result = pytester.runpytest_subprocess("--reliability-contracts", "-p", "no:randomly")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "train.input.yaml" in err and "INTERNALERROR" not in err + result.stdout.str()
    assert "Traceback" not in err
