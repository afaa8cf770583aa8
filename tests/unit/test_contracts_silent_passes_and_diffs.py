"""Contracts never pass bad data silently, never crash on odd input, and classify every
diff: object columns, naive datetimes, nulls, numpy scalars, model probes, diffs."""

from __future__ import annotations

import datetime as dt
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest

from reliability import Pipeline
from reliability.contracts import Contract, ContractSet
from reliability.contracts.checks import check_gates, check_metrics, check_model
from reliability.contracts.diff import diff_contracts, load_side
from reliability.contracts.lint import lint_contracts
from reliability.contracts.loader import load_specs
from reliability.contracts.spec import ContractSpec, GateSpec, MetricsSpec, ModelSpec
from reliability.contracts.testing import synthesized_test
from reliability.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
REF = ROOT / "contracts" / "reference"


def _contract(columns: dict[str, Any], **frame: Any) -> Contract:
    return Contract(ContractSpec.model_validate({
        "pipeline": "p", "step": "s", "direction": "output",
        "schema": {"columns": columns, **frame}}))


def _checks(contract: Contract, value: Any, detailed: bool) -> set[tuple[str | None, str]]:
    report = contract.validate(value, detailed=detailed)
    return {(f["column"], f["check"].split("(")[0].split("[")[0]) for f in report.failures}


# -- silent passes in the pandas validator ---------------------------------------------
@pytest.mark.parametrize("detailed", [False, True])
def test_object_column_of_non_strings_fails_a_str_contract(detailed: bool) -> None:
    c = _contract({"s": {"dtype": "str"}})
    got = c.validate(pd.DataFrame({"s": pd.Series(["a", 2, None], dtype=object)}),
                     detailed=detailed)
    assert not got.ok
    [failure] = [f for f in got.failures if f["check"] == "dtype('str')"]
    assert failure["failure_count"] == 1 and failure["failure_cases"] == [2]
    assert c.validate(pd.DataFrame({"s": pd.Series(["a", "b"], dtype=object)})).ok


def test_object_column_of_non_dates_fails_a_date_contract() -> None:
    c = _contract({"d": {"dtype": "date"}})
    assert not c.validate(pd.DataFrame({"d": pd.Series(["2020-01-01"], dtype=object)})).ok
    assert c.validate(pd.DataFrame({"d": pd.Series([dt.date(2020, 1, 1)], dtype=object)})).ok


def test_datetime_without_a_unit_is_any_naive_resolution_never_a_time_zone() -> None:
    c = _contract({"t": {"dtype": "datetime"}})
    stamps = pd.to_datetime(["2020-01-01", "2020-01-02"])
    assert not c.validate(pd.DataFrame({"t": stamps.tz_localize("UTC")})).ok
    assert c.validate(pd.DataFrame({"t": stamps.astype("datetime64[s]")})).ok
    assert not c.validate(pd.DataFrame({"t": ["2020-01-01", "x"]})).ok
    aware = _contract({"t": {"dtype": "datetime64[us, UTC]"}})
    assert aware.validate(pd.DataFrame({"t": stamps.tz_localize("UTC")})).ok


# -- ignore_na: false was accepted and silently ignored --------------------------------
@pytest.mark.parametrize("detailed", [False, True])
@pytest.mark.parametrize("lib", ["pandas", "polars"])
@pytest.mark.parametrize("rule", [{"greater_than_or_equal_to": 0}, {"isin": [1.0, 2.0]}])
def test_ignore_na_false_makes_nulls_fail_value_checks(detailed: bool, lib: str,
                                                       rule: dict[str, Any]) -> None:
    data = {"x": [1.0, math.nan]}
    frame = pd.DataFrame(data) if lib == "pandas" else pl.DataFrame(data)
    strict = _contract({"x": {"dtype": "float64", "nullable": True, "ignore_na": False, **rule}})
    lenient = _contract({"x": {"dtype": "float64", "nullable": True, **rule}})
    assert not strict.validate(frame, detailed=detailed).ok
    assert lenient.validate(frame, detailed=detailed).ok
    assert [w.where for w in lint_contracts([strict])] == []
    assert [w.where for w in lint_contracts([lenient])] == ["schema.columns.x"]


# -- checks that cannot apply to a dtype: a config error, not a crash or a no-op ---------
@pytest.mark.parametrize(("column", "path", "words"), [
    ("{dtype: str, greater_than: 0}", "schema.columns.s", "compare numbers"),
    ("{dtype: datetime, greater_than: 0}", "schema.columns.s", "compare numbers"),
    ("{dtype: int64, isin: [a, b]}", "schema.columns.s", "cannot occur in a int64"),
    ("{dtype: int64, equal_to: a}", "schema.columns.s", "cannot occur"),
    ("{dtype: float64, str_matches: 'a+'}", "schema.columns.s", "str or category"),
])
def test_check_that_does_not_fit_the_dtype_is_a_config_error(
        tmp_path: Path, column: str, path: str, words: str) -> None:
    f = tmp_path / "s.output.yaml"
    f.write_text(f"pipeline: p\nstep: s\ndirection: output\nschema:\n  columns:\n"
                 f"    s: {column}\n")
    with pytest.raises(ConfigError) as info:
        load_specs(tmp_path)
    assert info.value.file == str(f)
    assert ".".join(map(str, info.value.path)) == path
    assert words in str(info.value)


def test_top_level_list_and_pandera_checks_list(tmp_path: Path) -> None:
    f = tmp_path / "s.output.yaml"
    f.write_text("- pipeline: p\n")
    with pytest.raises(ConfigError, match="mapping of keys, not a list") as info:
        load_specs(tmp_path)
    assert "pipeline:" in info.value.fix
    f.write_text("pipeline: p\nstep: s\ndirection: output\nschema:\n  columns:\n"
                 "    x:\n      dtype: int64\n      checks:\n"
                 "        - {greater_than_or_equal_to: 0}\n        - {less_than: 5}\n")
    [c] = load_specs(tmp_path)
    assert c.spec.frame is not None
    assert c.spec.frame.columns["x"].value_range().text() == "[0, 5)"


# -- metrics, gates and models ---------------------------------------------------------
def test_numpy_scalars_are_numbers_in_metrics_and_gates() -> None:
    spec = MetricsSpec.model_validate({"fields": {
        "accuracy": {"type": "float", "min": 0, "max": 1}, "rows": {"type": "int", "min": 1},
        "ok": {"type": "bool"}}})
    good = {"accuracy": np.float32(0.9), "rows": np.int64(5), "ok": np.bool_(True)}
    assert check_metrics(spec, good) == []
    assert check_gates([GateSpec(metric="rows", min=3)], good) == []
    bad = check_metrics(spec, {"accuracy": np.float64(2.0), "rows": np.bool_(True), "ok": 1})
    assert {(f.column, f.check.split("(")[0].split("[")[0]) for f in bad} == {
        ("accuracy", "in_range"), ("rows", "dtype"), ("ok", "dtype")}


def test_model_probe_without_the_features_is_a_finding() -> None:
    class Model:
        def predict(self, x: Any) -> Any:
            return np.zeros(len(x), dtype="int64")

    spec = ModelSpec.model_validate({"probe": "frame", "features": ["missing"],
                                     "predictions": {"dtype": "int64"}})
    [finding] = check_model(spec, Model(), {"frame": pd.DataFrame({"a": [1]})},
                            lambda predicted: [])
    assert finding.check == "probe_features" and "missing" in finding.failure_cases[0]


# -- generated inputs for a step that takes a LazyFrame --------------------------------
def test_generated_inputs_respect_a_lazyframe_annotation() -> None:
    pipe = Pipeline("lazyp")

    @pipe.step()
    def src() -> pl.DataFrame:
        return pl.DataFrame({"x": [0.5]})

    @pipe.step()
    def double(src: pl.LazyFrame) -> pl.DataFrame:
        return src.with_columns(pl.col("x") * 2).collect()

    cols = {"x": {"dtype": "float64", "in_range": {"min_value": 0, "max_value": 1}}}
    cset = ContractSet(pipeline="lazyp")
    cset.add(Contract(ContractSpec.model_validate({
        "pipeline": "lazyp", "step": "double", "direction": "input", "input": "src",
        "schema": {"columns": cols}})))
    cset.add(Contract(ContractSpec.model_validate({
        "pipeline": "lazyp", "step": "double", "direction": "output",
        "schema": {"columns": {"x": {**cols["x"], "in_range": {"min_value": 0,
                                                                 "max_value": 2}}}}})))
    synthesized_test(pipe, cset, "double", max_examples=5)()


# -- diff ------------------------------------------------------------------------------
def _tree(tmp_path: Path, name: str) -> Path:
    d = tmp_path / name / "reference"
    shutil.copytree(REF, d)
    return d


def _edit(d: Path, file: str, old: str, new: str) -> None:
    p = d / file
    assert old in p.read_text()
    p.write_text(p.read_text().replace(old, new, 1))


def _changes(old: Path, new: Path) -> set[tuple[str, str, str]]:
    return {(c.severity, c.contract.split(".", 1)[1], c.where)
            for c in diff_contracts(load_side(str(old)), load_side(str(new)))}


def test_diff_max_rows_and_required_input_column_are_breaking(tmp_path: Path) -> None:
    old, new = _tree(tmp_path, "old"), _tree(tmp_path, "new")
    _edit(old, "validate.input.ingest.yaml", "min_rows: 100", "min_rows: 100\n  max_rows: 1000")
    _edit(new, "validate.input.ingest.yaml", "min_rows: 100", "min_rows: 100\n  max_rows: 500")
    _edit(new, "validate.input.ingest.yaml", "    target:", "    batch: {dtype: int64}\n    target:")
    _edit(new, "validate.output.yaml", "    target:", "    batch: {dtype: int64}\n    target:")
    got = _changes(old, new)
    assert ("breaking", "validate.input.ingest", "max_rows") in got
    assert ("breaking", "validate.input.ingest", "columns.batch") in got
    assert ("info", "validate.output", "columns.batch") in got


def test_diff_reports_every_change_and_ignores_set_order(tmp_path: Path) -> None:
    old, new = _tree(tmp_path, "old"), _tree(tmp_path, "new")
    _edit(new, "featurize.output.yaml", "threshold: 0.35", "threshold: 0.2")
    _edit(new, "ingest.output.yaml", "isin: [0, 1, 2]", "isin: [2, 1, 0]")
    _edit(new, "package.output.yaml", "min_bytes: 100", "min_bytes: 200")
    got = _changes(old, new)
    wheres = {(contract, where) for _, contract, where in got}
    assert ("featurize.output", "drift") in wheres
    assert ("package.output", "file.min_bytes") in wheres
    assert not any(c == "ingest.output" for c, _ in wheres)


def test_diff_of_parent_folders_and_empty_sides(tmp_path: Path) -> None:
    old, new = _tree(tmp_path, "old"), _tree(tmp_path, "new")
    _edit(new, "ingest.output.yaml", "max_value: 16}", "max_value: 15}")
    assert len(load_side(str(old.parent))) == 9  # contracts/<pipeline>/ is read too
    assert ("breaking", "ingest.output", "columns.alcohol.range") in _changes(
        old.parent, new.parent)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no contract files"):
        load_side(str(tmp_path / "empty"))


def test_diff_git_parent_folder_and_bare_revision(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(REF, repo / "contracts" / "reference")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false",
           "-C", str(repo)]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "v1"], check=True)
    _edit(repo / "contracts" / "reference", "ingest.output.yaml", "max_value: 16}",
          "max_value: 15}")
    monkeypatch.chdir(repo)
    for old, new in [("HEAD:contracts", "contracts"), ("HEAD", "contracts"),
                     ("HEAD", "contracts/reference/ingest.output.yaml")]:
        changes = diff_contracts(load_side(old, new), load_side(new, old))
        assert [(c.severity, c.where) for c in changes] == [
            ("breaking", "columns.alcohol.range")], (old, new)
    with pytest.raises(ConfigError, match="names no path"):
        load_side("HEAD", "HEAD")


def test_python_declared_schema_keeps_ignore_na_and_rejects_misfit_checks() -> None:
    import pandera.pandas as pa

    cset = ContractSet(pipeline="p")
    c = cset.add_pandera(pa.DataFrameSchema({"x": pa.Column(
        float, pa.Check.ge(0, ignore_na=False), nullable=True)}), step="s")
    assert not c.validate(pd.DataFrame({"x": [1.0, math.nan]})).ok
    with pytest.raises(ConfigError, match="compare numbers") as info:
        cset.add_pandera(pa.DataFrameSchema({"s": pa.Column(str, pa.Check.ge(0))}), step="t")
    assert list(info.value.path) == ["columns", "s"]


def test_pandas_nullable_extension_dtypes_and_nullable_patterns() -> None:
    """Int64 / Float64 / boolean columns with NA, and nulls in a nullable str_matches
    column, pass; real violations are reported once, without a spurious dtype failure."""
    import pandas as pd

    from reliability.contracts import Contract
    from reliability.contracts.spec import ContractSpec

    spec = ContractSpec.model_validate({
        "pipeline": "p", "step": "s", "direction": "output",
        "schema": {"columns": {"x": {"dtype": "int64", "nullable": True, "ge": 0},
                               "f": {"dtype": "float64", "nullable": True, "le": 1.5},
                               "b": {"dtype": "boolean", "nullable": True},
                               "t": {"dtype": "str", "nullable": True, "str_matches": "a+"}},
                   "strict": True, "min_rows": 1}})
    contract = Contract(spec)
    good = pd.DataFrame({"x": pd.array([1, None], dtype="Int64"),
                         "f": pd.array([1.0, None], dtype="Float64"),
                         "b": pd.array([True, None], dtype="boolean"), "t": ["a", None]})
    assert contract.validate(good).ok
    bad = good.copy()
    bad.loc[0, "x"], bad.loc[0, "f"], bad.loc[0, "t"] = -1, 2.0, "b"
    for detailed in (True, False):
        report = contract.validate(bad, detailed=detailed)
        assert sorted(f["column"] for f in report.failures) == ["f", "t", "x"]
        assert all(f["failure_count"] == 1 for f in report.failures)
    nulls = pd.DataFrame({"x": pd.array([None], dtype="Int64"),
                          "f": pd.array([None], dtype="Float64"),
                          "b": pd.array([None], dtype="boolean"), "t": [None]})
    strict = ContractSpec.model_validate({
        "pipeline": "p", "step": "s", "direction": "output",
        "schema": {"columns": {"t": {"dtype": "str", "nullable": False, "str_matches": "a+"}},
                   "strict": False, "min_rows": 1}})
    failed = Contract(strict).validate(nulls, detailed=False)
    assert {f["check"] for f in failed.failures} >= {"not_nullable"}


def test_nan_in_a_nullable_equal_to_column_is_missing_in_both_libraries() -> None:
    import math

    import pandas as pd
    import polars as pl

    from reliability.contracts import Contract
    from reliability.contracts.spec import ContractSpec

    def contract(nullable: bool) -> Contract:
        return Contract(ContractSpec.model_validate({
            "pipeline": "p", "step": "s", "direction": "output",
            "schema": {"columns": {"v": {"dtype": "float64", "nullable": nullable,
                                         "equal_to": 1.0}},
                       "strict": True, "min_rows": 1}}))

    values = [1.0, math.nan]
    for frame in (pd.DataFrame({"v": values}), pl.DataFrame({"v": values})):
        assert contract(True).validate(frame, detailed=False).ok, type(frame)
        failed = contract(False).validate(frame, detailed=False)
        assert not failed.ok, type(frame)  # NaN is a missing value a required column lacks
    wrong = [1.0, 2.0]
    for frame in (pd.DataFrame({"v": wrong}), pl.DataFrame({"v": wrong})):
        report = contract(True).validate(frame, detailed=False)
        assert [f["failure_count"] for f in report.failures] == [1], type(frame)
