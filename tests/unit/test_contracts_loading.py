"""Contract YAML loading: strict specs, and clear ConfigErrors for every kind of bad input."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.reference import pipeline as reference
from reliability.contracts import ContractSet, load_contracts
from reliability.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
GOOD = "pipeline: reference\nstep: validate\ndirection: output\nschema:\n  columns:\n"


def _write(tmp_path: Path, text: str) -> Path:
    d = tmp_path / "contracts"
    d.mkdir(exist_ok=True)
    (d / "c.yaml").write_text(text)
    return d


def test_reference_contracts_load() -> None:
    cs = load_contracts(ROOT / "contracts", reference)
    assert len(cs) == 9 and cs.output("evaluate") is not None
    assert set(cs.inputs("validate")) == {"ingest"}


@pytest.mark.parametrize(("text", "path", "needle"), [
    (GOOD + "    x: {dtype: float64, in_rnge: {min_value: 0}}\n", "schema.columns.x.in_rnge",
     "in_range"),
    (GOOD + "    x: {dtype: flaot64}\n", "schema.columns.x.dtype", "float64"),
    (GOOD.replace("step: validate", "step: valdate") + "    x: {dtype: int64}\n", "step",
     "did you mean 'validate'"),
    (GOOD + "    x: {dtype: int64}\nstrictt: true\n", "strictt", "strict"),
    ("pipeline: reference\nstep: validate\ndirection: input\ninput: nope\nschema: {columns: {}}\n",
     "input", "ingest"),
    ("pipeline: reference\nstep: evaluate\ndirection: output\nkind: metrics\n", "",
     "metrics"),
])
def test_bad_contracts_name_file_path_and_fix(tmp_path: Path, text: str, path: str,
                                              needle: str) -> None:
    d = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_contracts(d, reference)
    err = info.value
    assert err.file and err.file.endswith("c.yaml")
    assert err.key_path == path
    assert needle in str(err) and err.fix


def test_malformed_yaml_and_empty_file(tmp_path: Path) -> None:
    d = _write(tmp_path, "pipeline: [unclosed\n")
    with pytest.raises(ConfigError, match="malformed YAML at line"):
        load_contracts(d, reference)
    (d / "c.yaml").write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_contracts(d, reference)


def test_foreign_files_skipped_and_wrong_pipeline_rejected(tmp_path: Path) -> None:
    d = _write(tmp_path, GOOD.replace("reference", "other") + "    x: {dtype: int64}\n")
    (d / "reference.sla.yaml").write_text("not: a contract\n")
    with pytest.raises(ConfigError, match="pipeline 'other'") as info:
        load_contracts(d, reference)
    assert info.value.key_path == "pipeline"


def test_duplicate_contract_for_one_boundary(tmp_path: Path) -> None:
    d = _write(tmp_path, GOOD + "    x: {dtype: int64}\n")
    (d / "d.yaml").write_text(GOOD + "    y: {dtype: int64}\n")
    with pytest.raises(ConfigError, match="two contracts guard"):
        load_contracts(d, reference)


def test_python_declared_pandera_contract() -> None:
    import pandera.pandas as pa

    schema = pa.DataFrameSchema({"id": pa.Column(int, unique=True),
                                 "x": pa.Column(float, pa.Check.in_range(0, 1))}, strict=True)
    cs = ContractSet(pipeline="reference")
    c = cs.add_pandera(schema, step="validate")
    assert c.spec.frame is not None and c.spec.frame.columns["id"].unique
    import pandas as pd

    assert c.validate(pd.DataFrame({"id": [1, 2], "x": [0.5, 0.7]})).ok
    assert not c.validate(pd.DataFrame({"id": [1, 1], "x": [0.5, 1.7]})).ok


def test_cli_reports_bad_contract_without_traceback(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    shutil.copytree(ROOT / "contracts" / "reference", proj / "contracts" / "reference")
    (proj / "contracts" / "reference" / "ingest.output.yaml").write_text(
        "pipeline: reference\nstep: ingest\ndirection: output\nschema:\n"
        "  columns:\n    a: {dtype: int64, between: 3}\n")
    (proj / "reliability.yaml").write_text("pipeline: pipelines.reference:pipeline\n")
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "reliability", "contracts", "lint"],
                         check=False, cwd=proj, capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "ingest.output.yaml: schema.columns.a.between: unknown key" in out.stderr
