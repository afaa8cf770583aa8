"""Lazy imports of optional integrations, with an install hint when an extra is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from reliability.errors import MissingDependencyError

__all__ = ["require"]


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
