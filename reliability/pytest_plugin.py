"""pytest plugin: contract tests collected from the project's ``contracts/`` folder.

Inert unless asked: pass ``--reliability-contracts`` or set ``reliability_contracts = true``
in the ini file. Then, for the project's pipeline (``reliability.yaml``, or
``--reliability-pipeline``), every step whose inputs have contracts gets a test that runs it
on Hypothesis-generated valid inputs and checks its output contract, and every contract
gets a mutation test (any corruption derived from its rules that it lets through fails the
test, naming the mutation) on the step outputs recorded next to the contracts by
``reliability contracts snapshot``. No pipeline runs: the tests work offline, each in a
temporary working directory and home that is removed afterwards. Importing this module
imports nothing but pytest.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

_MARKER = "reliability_contract"
_STATE = pytest.StashKey[dict[str, Any]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("reliability", "pipeline-reliability contract tests")
    group.addoption("--reliability-contracts", action="store_true", default=None,
                    help="collect contract tests from the project's contracts folder")
    group.addoption("--reliability-contracts-dir", default=None, metavar="DIR",
                    help="contracts folder (default: from reliability.yaml)")
    group.addoption("--reliability-pipeline", default=None, metavar="MODULE:ATTR",
                    help="pipeline to test (default: from reliability.yaml)")
    group.addoption("--reliability-max-examples", type=int, default=None, metavar="N",
                    help="generated examples per step (default 25)")
    parser.addini("reliability_contracts", type="bool", default=False,
                  help="collect contract tests (same as --reliability-contracts)")
    parser.addini("reliability_contracts_dir", default="", help="contracts folder")
    parser.addini("reliability_pipeline", default="", help="pipeline module:attribute")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{_MARKER}: a contract test collected by pipeline-reliability")


def _active(config: pytest.Config) -> bool:
    flag = config.getoption("reliability_contracts")
    return bool(flag) if flag is not None else bool(config.getini("reliability_contracts"))


def _opt(config: pytest.Config, name: str) -> str | None:
    value = config.getoption(name) or config.getini(name)
    return str(value) if value else None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    if not _active(config):
        return
    from reliability.errors import ReliabilityError
    from reliability.project import find_project

    try:  # bad contracts or project files are usage errors: one message, no traceback
        project = find_project(config.rootpath)
        if str(project.root) not in sys.path:
            sys.path.insert(0, str(project.root))
        directory = Path(_opt(config, "reliability_contracts_dir")
                         or project.contracts_dir).resolve()
        try:
            name = str(directory.resolve().relative_to(config.rootpath))
        except ValueError:
            name = str(directory)
        suite = ContractSuite.from_parent(session, name=name, path=directory)
        suite.pipeline_ref = _opt(config, "reliability_pipeline") or project.pipeline_ref
        items.extend(suite.collect())
    except ReliabilityError as exc:
        raise pytest.UsageError(f"pipeline-reliability contracts: {exc}") from None


class ContractSuite(pytest.Collector):
    """The contract tests of one pipeline."""

    pipeline_ref = ""

    def _load(self) -> tuple[Any, Any]:
        state = self.config.stash.setdefault(_STATE, {})
        if "contracts" not in state:
            from reliability.contracts.loader import load_contracts
            from reliability.pipeline import load_pipeline

            pipeline = load_pipeline(self.pipeline_ref)
            state["pipeline"] = pipeline
            state["contracts"] = load_contracts(self.path, pipeline)
        return state["pipeline"], state["contracts"]

    def collect(self) -> list[pytest.Item]:  # type: ignore[override]
        from reliability.contracts.testing import synthesizable

        pipeline, contracts = self._load()
        out: list[pytest.Item] = []
        for step in pipeline.validate():
            if any(c.step == step for c in contracts) and \
                    synthesizable(pipeline, contracts, step) is None:
                out.append(ContractItem.from_parent(self, name=f"generated[{step}]",
                                                    kind="generated", target=step))
        for contract in contracts:
            out.append(ContractItem.from_parent(self, name=f"mutations[{contract.name}]",
                                                kind="mutations", target=contract.name))
        for item in out:
            item.add_marker(_MARKER)
        return out


class ContractItem(pytest.Item):
    def __init__(self, *, kind: str, target: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.kind = kind
        self.target = target

    def runtest(self) -> None:
        from reliability.contracts.testing import describe_failure, isolated

        assert isinstance(self.parent, ContractSuite)
        pipeline, contracts = self.parent._load()
        with isolated() as root:
            try:
                if self.kind == "generated":
                    self._generated(pipeline, contracts, root)
                else:
                    self._mutations(pipeline, contracts, root)
            except ContractTestFailure:
                raise
            except Exception as exc:  # every failure Hypothesis found, each described
                raise ContractTestFailure(describe_failure(exc, lines=12)) from None

    def _recorded(self, pipeline: Any, contracts: Any, root: Path) -> Any:
        from reliability.contracts.snapshot import load_snapshot, snapshot_dir
        from reliability.errors import ConfigError

        try:
            return load_snapshot(snapshot_dir(self.path, pipeline.name), pipeline, contracts,
                                 root / "recorded")
        except ConfigError as exc:
            if self.kind == "generated":
                return None  # generated inputs need only the parameters
            raise ContractTestFailure(f"mutations cannot be injected: {exc}") from None

    def _generated(self, pipeline: Any, contracts: Any, root: Path) -> None:
        from reliability.contracts.testing import synthesized_test

        snap = self._recorded(pipeline, contracts, root)
        n = self.config.getoption("reliability_max_examples") or 25
        synthesized_test(pipeline, contracts, self.target, max_examples=n,
                         params=snap.params if snap else None)()

    def _mutations(self, pipeline: Any, contracts: Any, root: Path) -> None:
        from reliability.contracts.testing import check_recorded, mutation_test

        snap = self._recorded(pipeline, contracts, root)
        try:
            check_recorded(pipeline, contracts, snap.outputs, snap.params)
        except Exception as exc:
            raise ContractTestFailure(
                "the recorded step outputs break a contract, so mutations cannot be "
                f"injected: {exc}\nFix: record them again with `reliability contracts "
                "snapshot`, or correct the contract") from None
        report = mutation_test(pipeline, contracts, snap.outputs, snap.params,
                               only=lambda c: c.name == self.target)
        state = self.config.stash[_STATE]
        state.setdefault("rates", {})[self.target] = (
            len(report.applied) - len(report.survivors), len(report.applied),
            [o.mutation for o in report.skipped])
        if report.survivors:
            lines = [f"  {o.mutation} (rule {o.rule}): {o.detail}" for o in report.survivors]
            raise ContractTestFailure(
                f"contract {self.target!r} let {len(report.survivors)} of "
                f"{len(report.applied)} mutation(s) through:\n" + "\n".join(lines))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        if isinstance(excinfo.value, ContractTestFailure | AssertionError):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"contract {self.kind}: {self.target}"


class ContractTestFailure(AssertionError):
    """A contract test failed (the message names the step, contract or mutation)."""


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    rates = config.stash.get(_STATE, {}).get("rates")
    if not rates:
        return
    terminalreporter.section("contract mutation kill rate")
    total_k = total_n = 0
    for name, (k, n, skipped) in sorted(rates.items()):
        total_k, total_n = total_k + k, total_n + n
        note = f"; not applicable: {', '.join(skipped)}" if skipped else ""
        terminalreporter.write_line(f"{name}: {k}/{n} ({k / n if n else 1:.0%}){note}")
    terminalreporter.write_line(f"overall: {total_k}/{total_n} "
                                f"({total_k / total_n if total_n else 1:.0%})")
