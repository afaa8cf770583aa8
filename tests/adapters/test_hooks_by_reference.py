"""Hosts that start every task from a file or a component's source take step hooks by
``module:attr`` reference (Metaflow, KFP): what a reference resolves to, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from reliability.adapters.core import load_hooks
from reliability.chaos.hook import ChaosHook
from reliability.errors import DefinitionError


def test_a_reference_to_a_list_of_hooks_loads_them(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "team_hooks.py").write_text(
        "from reliability.chaos.faults import ExceptionFault\n"
        "from reliability.chaos.hook import ChaosHook\n"
        "hooks = [ChaosHook([ExceptionFault(step='clean')])]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    [hook] = load_hooks("team_hooks:hooks")
    assert isinstance(hook, ChaosHook)


def test_a_missing_module_names_the_reference_and_the_fix() -> None:
    with pytest.raises(DefinitionError, match=r"cannot import hooks 'no_such_mod:hooks'.*"
                                              r"Fix: put the module on PYTHONPATH"):
        load_hooks("no_such_mod:hooks")


def test_a_reference_to_something_else_says_what_it_found(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "odd_hooks.py").write_text("hooks = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(DefinitionError, match=r"'odd_hooks:hooks' is int, not a list.*Fix"):
        load_hooks("odd_hooks:hooks")
    with pytest.raises(DefinitionError, match=r"'odd_hooks:other' is NoneType"):
        load_hooks("odd_hooks:other")
    with pytest.raises(DefinitionError, match=r"'odd_hooks' is not 'module:attr'"):
        load_hooks("odd_hooks")
