"""Lazy imports of optional integrations, with an install hint when an extra is missing."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from reliability.errors import MissingDependencyError

__all__ = ["lazy_exports", "require"]


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise MissingDependencyError naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{purpose} needs the {module.split('.', maxsplit=1)[0]!r} package, which is "
            "not installed. "
            f"Fix: pip install 'pipeline-reliability[{extra}]'"
        ) from exc


def lazy_exports(package: str, homes: Mapping[str, str]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for a package that re-exports names lazily.

    ``homes`` maps each public name to the submodule defining it, so importing the package
    costs nothing until a name is used; the first use caches the value in the package.
    """

    def __getattr__(name: str) -> Any:
        module = homes.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *homes})

    return __getattr__, __dir__
