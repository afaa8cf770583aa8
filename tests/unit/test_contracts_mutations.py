"""Mutation testing of contracts, generated-input tests, lint, and the import budget."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import polars as pl
import pytest

from pipelines.reference import pipeline as reference
from reliability.contracts import Contract, derive_mutations, load_contracts
from reliability.contracts.lint import lint_contracts
from reliability.contracts.snapshot import load_snapshot, snapshot_dir
from reliability.contracts.spec import ContractSpec
from reliability.contracts.suite import run_suite
from reliability.contracts.testing import mutation_test, synthesized_test

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def contracts():  # type: ignore[no-untyped-def]
    return load_contracts(ROOT / "contracts", reference)


def _recorded(contracts, tmp: Path):  # type: ignore[no-untyped-def]
    return load_snapshot(snapshot_dir(ROOT / "contracts", "reference"), reference, contracts,
                         tmp)


def test_reference_kill_rate_is_total(contracts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    outputs = _recorded(contracts, tmp_path).outputs
    report = mutation_test(reference, contracts, outputs)
    assert len(report.outcomes) > 300
    assert report.survivors == [] and report.kill_rate == 1.0
    kinds = {o.mutation if o.mutation.startswith("predictions") else o.mutation.split(":")[0]
             for o in report.outcomes}
    assert {"null", "nan", "inf", "above_range", "below_range", "outside_set",
            "duplicate_key", "dtype_flip", "dropped_column", "extra_column", "empty_frame",
            "below_gate", "drop_method", "predictions:outside_set", "empty_file"} <= kinds


def test_weak_contract_lets_mutations_survive(contracts) -> None:  # type: ignore[no-untyped-def]
    weak = Contract(ContractSpec.model_validate({
        "pipeline": "p", "step": "s", "direction": "output",
        "schema": {"columns": {"v": {"dtype": "float64", "nullable": True}}}}))
    frame = pd.DataFrame({"v": [1.0, 2.0]})
    names = {m.name for m in derive_mutations(weak)}
    assert "null:v" not in names and "dtype_flip:v" in names
    survived = [m.name for m in derive_mutations(weak) if weak.validate(m.apply(frame)).ok]
    assert survived == []  # every derived corruption breaks a rule the contract states


@pytest.mark.parametrize("lib", ["pandas", "polars"])
def test_mutations_apply_to_both_libraries_without_touching_input(lib: str) -> None:
    c = Contract(ContractSpec.model_validate({
        "pipeline": "p", "step": "s", "direction": "output",
        "schema": {"columns": {"id": {"dtype": "int64", "unique": True},
                               "x": {"dtype": "float64", "ge": 0, "le": 1},
                               "c": {"dtype": "str", "isin": ["a", "b"]}}}}))
    data = {"id": [1, 2, 3], "x": [0.1, 0.2, 0.3], "c": ["a", "b", "a"]}
    frame = pd.DataFrame(data) if lib == "pandas" else pl.DataFrame(data)
    for m in derive_mutations(c):
        report = c.validate(m.apply(frame), detailed=False)
        assert not report.ok, m.name
        assert m.rule and m.contract == "p.s.output"
    assert c.validate(frame).ok


def test_generated_inputs_find_a_broken_step(contracts) -> None:  # type: ignore[no-untyped-def]
    synthesized_test(reference, contracts, "validate", max_examples=10)()
    spec = reference.steps["validate"]
    original = spec.fn
    object.__setattr__(spec, "fn", lambda ingest: original(ingest).assign(alcohol=-1.0))
    try:
        with pytest.raises(AssertionError, match="alcohol"):
            synthesized_test(reference, contracts, "validate", max_examples=10)()
    finally:
        object.__setattr__(spec, "fn", original)


def test_suite_summary(contracts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from reliability.contracts.suite import suite_stages

    seen: list[str] = []
    snap = _recorded(contracts, tmp_path)
    result = run_suite(reference, contracts, max_examples=5, progress=seen.append,
                       params=snap.params, recorded=snap.outputs)
    assert result.ok and result.kill_rate == 1.0
    assert "mutation kill rate 100%" in result.headline()
    assert seen == suite_stages(reference, contracts)  # every stage announced, in order
    assert seen[-2:] == ["recorded inputs", "mutations"] and len(seen) > 2


def test_lint_flags_silent_pass_settings(tmp_path: Path) -> None:
    spec = ContractSpec.model_validate({
        "pipeline": "p", "step": "s", "direction": "output",
        "validation": {"enabled": False, "sample": 10},
        "schema": {"columns": {"v": {"dtype": "float64", "nullable": True, "ge": 0}},
                   "strict": False, "min_rows": 0}})
    found = {(x.level, x.where) for x in lint_contracts([Contract(spec)])}
    assert {("warning", "validation.enabled"), ("warning", "validation.sample"),
            ("warning", "schema.strict"), ("warning", "schema.min_rows"),
            ("warning", "schema.columns.v")} <= found


def test_reference_contracts_lint_clean(contracts) -> None:  # type: ignore[no-untyped-def]
    assert [x for x in lint_contracts(contracts, reference) if x.level == "warning"] == []


def test_import_reliability_stays_light() -> None:
    code = ("import sys, reliability, reliability.contracts, reliability.pytest_plugin; "
            "import json; print(json.dumps(sorted(m for m in ('pandera', 'pandas', 'polars') "
            "if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT, timeout=60)
    assert json.loads(out.stdout) == []


def test_contract_tests_leave_no_temporary_files(tmp_path: Path) -> None:
    import subprocess
    import sys

    from helpers import subprocess_env

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    code = ("from reliability.contracts import load_contracts\n"
            "from reliability.contracts.snapshot import load_snapshot, snapshot_dir\n"
            "from reliability.contracts.suite import run_suite\n"
            "from reliability.contracts.testing import isolated\n"
            "from pipelines.reference import pipeline\n"
            "import pathlib\n"
            "c = load_contracts(pathlib.Path('contracts').resolve(), pipeline)\n"
            "d = snapshot_dir(pathlib.Path('contracts').resolve(), 'reference')\n"
            "with isolated() as root:\n"
            "    s = load_snapshot(d, pipeline, c, root / 'recorded')\n"
            "    r = run_suite(pipeline, c, max_examples=2, params=s.params, "
            "recorded=s.outputs)\n"
            "assert r.ok, r.rows\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=subprocess_env(TMPDIR=str(scratch)),
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert list(scratch.iterdir()) == []  # step files of every stage removed
