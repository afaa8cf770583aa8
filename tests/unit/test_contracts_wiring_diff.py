"""The DAG wiring proof, and contract diffs classified by severity."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from pipelines.reference import pipeline as reference
from reliability import Pipeline
from reliability.cli.contracts import register
from reliability.contracts import ContractSet, check_wiring, load_contracts
from reliability.contracts.diff import diff_contracts, load_side
from reliability.errors import ConfigError, WiringError

ROOT = Path(__file__).resolve().parents[2]
REF = ROOT / "contracts" / "reference"


def _copy(tmp_path: Path, name: str = "new") -> Path:
    d = tmp_path / name / "reference"
    shutil.copytree(REF, d)
    return d


def _edit(d: Path, file: str, old: str, new: str) -> None:
    p = d / file
    text = p.read_text()
    assert old in text, (file, old)
    p.write_text(text.replace(old, new, 1))


def test_reference_wiring_is_proven() -> None:
    report = check_wiring(reference, load_contracts(ROOT / "contracts", reference))
    assert ("ingest", "validate", "ingest") in report.proven
    assert ("featurize", "train", "featurize") in report.proven


def test_real_mismatch_rejected_naming_both_steps(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    # the producer may now emit NaN alcohol and wider hue; the consumer still forbids both
    _edit(d, "validate.output.yaml", "alcohol: {dtype: float64,",
          "alcohol: {dtype: float64, nullable: true,")
    _edit(d, "validate.output.yaml", "hue: {dtype: float64, in_range: {min_value: 0, "
          "max_value: 2.5}}", "hue: {dtype: float64, in_range: {min_value: 0, max_value: 9}}")
    _edit(d, "featurize.input.validate.yaml", "    target: {dtype: int64, isin: [0, 1, 2]}",
          "    target: {dtype: int64, isin: [0, 1, 2]}\n    batch: {dtype: str}")
    with pytest.raises(WiringError) as info:
        check_wiring(reference, load_contracts(d.parent, reference))
    msg = str(info.value)
    assert "validate -> featurize(validate)" in msg
    assert "column 'alcohol': nullable in the producer" in msg
    assert "column 'hue': range [0, 9] produced, [0, 2.5] accepted" in msg
    assert "column 'batch' is required but not produced" in msg
    assert f"in {d / 'validate.output.yaml'} vs" in msg  # both files are named
    assert f"in {d / 'featurize.input.validate.yaml'})" in msg


def test_annotation_mismatch_rejected() -> None:
    p = Pipeline("types")

    @p.step
    def make() -> dict[str, int]:
        return {}

    @p.step
    def use(make: pd.DataFrame) -> int:
        return len(make)

    with pytest.raises(WiringError, match="'make' returns dict but 'use' takes make: DataFrame"):
        check_wiring(p, ContractSet())


def test_diff_classifies_real_changes(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    _edit(d, "validate.output.yaml", "    hue: {dtype: float64, in_range: {min_value: 0, "
          "max_value: 2.5}}\n", "")                                              # removed
    _edit(d, "validate.output.yaml", "sample_id: {dtype: int64,", "sample_id: {dtype: int32,")
    _edit(d, "ingest.output.yaml", "max_value: 16}", "max_value: 15}")          # narrowed
    _edit(d, "ingest.output.yaml", "magnesium: {dtype: float64, in_range: {min_value: 50, "
          "max_value: 200}}", "magnesium: {dtype: float64, in_range: {min_value: 0, "
          "max_value: 300}}")                                                    # widened
    _edit(d, "featurize.output.yaml", "    split:", "    weight: {dtype: float64}\n    split:")
    _edit(d, "evaluate.output.yaml", "{metric: accuracy, min: 0.85}", "{metric: accuracy, min: 0.9}")
    (d / "evaluate.input.yaml").write_text(
        "pipeline: reference\nstep: evaluate\ndirection: input\ninput: featurize\n"
        "schema:\n  columns:\n    split: {dtype: str}\n  strict: false\n")
    changes = diff_contracts(load_side(str(REF)), load_side(str(d)))
    got = {(c.severity, c.contract.split(".", 1)[1], c.where) for c in changes}
    assert ("breaking", "validate.output", "columns.hue") in got
    assert ("breaking", "validate.output", "columns.sample_id.dtype") in got
    assert ("breaking", "ingest.output", "columns.alcohol.range") in got
    assert ("warning", "ingest.output", "columns.magnesium.range") in got
    assert ("info", "featurize.output", "columns.weight") in got
    assert ("breaking", "evaluate.output", "gates.accuracy") in got
    assert ("breaking", "evaluate.input.featurize", "") in got
    assert not diff_contracts(load_side(str(REF)), load_side(str(REF)))


def test_diff_widening_is_a_warning_and_nullable_to_required_breaks(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    _edit(d, "featurize.output.yaml", "split: {dtype: str,", "split: {dtype: str, nullable: true,")
    changes = diff_contracts(load_side(str(REF)), load_side(str(d)))
    assert [c.severity for c in changes] == ["warning"]
    back = diff_contracts(load_side(str(d)), load_side(str(REF)))
    assert [(c.severity, c.message) for c in back] == [("breaking", "nullable -> required")]


def _cli(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_diff_cli_exit_codes_and_git_revisions(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(REF, repo / "contracts" / "reference")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "-C", str(repo), "add", "."], check=True)
    subprocess.run([*git, "-C", str(repo), "commit", "-qm", "v1"], check=True)
    _edit(repo / "contracts" / "reference", "featurize.output.yaml", "    split:",
          "    weight: {dtype: float64}\n    split:")
    monkeypatch.chdir(repo)
    assert _cli(["contracts", "diff", "HEAD:contracts/reference", "contracts/reference"]) == 0
    _edit(repo / "contracts" / "reference", "ingest.output.yaml", "max_value: 16}",
          "max_value: 15}")
    assert _cli(["contracts", "diff", "HEAD:contracts/reference", "contracts/reference"]) == 1
    assert _cli(["contracts", "diff", "HEAD:contracts/reference", "contracts/reference",
                 "--fail-on", "never"]) == 0
    with pytest.raises(ConfigError, match="git cat-file"):
        _cli(["contracts", "diff", "HEAD:nope", "contracts/reference"])


@pytest.mark.parametrize(("have", "want", "ok"), [
    ("datetime64[ns]", "datetime", True),
    ("datetime64[us]", "datetime", True),
    ("datetime64[ns, UTC]", "datetime", False),   # a zoned column fails a naive contract
    ("datetime", "datetime64[ns]", False),        # any unit does not promise nanoseconds
    ("timedelta64[ms]", "timedelta", True),
    ("int64", "int64", True),
    ("int32", "int64", False),
    ("str", "string", True),
])
def test_wiring_accepts_a_producer_dtype_that_satisfies_the_consumer(
        have: str, want: str, ok: bool) -> None:
    from reliability.contracts.wiring import dtype_satisfies

    assert dtype_satisfies(have, want) is ok
