"""The one exception tree of pipeline-reliability.

Every error the toolkit raises on purpose derives from :class:`ReliabilityError`.
Where a builtin fits, the error inherits it too, so ``except ValueError`` keeps working::

    ReliabilityError
    ├── ConfigError(ValueError)            bad YAML / spec: names the file, key path and fix
    ├── DefinitionError(ValueError)        a pipeline that cannot run: duplicates, unknown deps
    │   └── CycleError                     names the cycle path
    ├── MissingDependencyError(ImportError) an optional extra is not installed
    ├── LedgerError                        the run ledger cannot be read or written
    ├── StorageError(OSError)              home/store/ledger cannot be written (fails fast)
    │   └── CorruptObject                  a stored object's bytes do not match its name
    ├── RunError                           a run did not succeed
    │   ├── StepFailed                     a step failed after its retries
    │   └── RunCancelled                   SIGINT/SIGTERM stopped the run (it is resumable)
    ├── ContractError
    │   ├── ContractViolation              data broke a contract (failure cases as data)
    │   └── WiringError(TypeError)         a producer's output cannot satisfy its consumer
    ├── ChaosError
    │   └── BlastRadiusError(PermissionError)  a fault aimed outside the allow-list
    └── SLAError
        └── RunbookError                   a runbook template failed to render safely
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "BlastRadiusError",
    "ChaosError",
    "ConfigError",
    "ContractError",
    "ContractViolation",
    "CorruptObject",
    "CycleError",
    "DefinitionError",
    "LedgerError",
    "MissingDependencyError",
    "ReliabilityError",
    "RunCancelled",
    "RunError",
    "RunbookError",
    "SLAError",
    "StepFailed",
    "StorageError",
    "WiringError",
]


class ReliabilityError(Exception):
    """Root of every error raised by pipeline-reliability."""


class ConfigError(ReliabilityError, ValueError):
    """A configuration file or spec is invalid.

    ``str(err)`` reads ``FILE: KEY.PATH: what is wrong. Fix: what to do``.
    """

    def __init__(
        self, message: str, *, file: str | None = None, path: Sequence[str | int] = (),
        fix: str | None = None,
    ) -> None:
        self.file = file
        self.path = tuple(p if isinstance(p, int) else shorten(str(p), 80) for p in path)
        self.reason = shorten(message)
        self.fix = shorten(fix) if fix else fix
        super().__init__(self._render())

    @property
    def key_path(self) -> str:
        out = ""
        for part in self.path:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
        return out

    def _render(self) -> str:
        where = ": ".join(p for p in (self.file, self.key_path) if p)
        text = f"{where}: {self.reason}" if where else self.reason
        return f"{text}. Fix: {self.fix}" if self.fix else text


def shorten(text: str, limit: int = 400) -> str:
    """``text`` cut in the middle to about ``limit`` characters, so a message never echoes
    a huge value in full."""
    if len(text) <= limit:
        return text
    head, tail = limit * 2 // 3, limit // 4
    return f"{text[:head]} ...[{len(text) - head - tail} characters cut]... {text[-tail:]}"


class DefinitionError(ReliabilityError, ValueError):
    """A pipeline declaration is invalid (duplicate or unknown step, bad signature)."""


class CycleError(DefinitionError):
    """The step graph has a cycle; ``cycle`` lists it, first step repeated at the end."""

    def __init__(self, pipeline: str, cycle: Sequence[str]) -> None:
        self.pipeline = pipeline
        self.cycle = list(cycle)
        super().__init__(
            f"pipeline {pipeline!r} has a dependency cycle: {' -> '.join(self.cycle)}. "
            "Fix: remove one of these dependencies so the steps form a DAG"
        )


class MissingDependencyError(ReliabilityError, ImportError):
    """An optional integration is used but its extra is not installed."""


class LedgerError(ReliabilityError):
    """The SQLite run ledger is missing, corrupt, or has no such run."""


class StorageError(ReliabilityError, OSError):
    """The home, the artifact store or the ledger cannot be written (or read).

    An environment problem (permissions, read-only or full disk, a bucket we may not write),
    not a transient one: the attempt fails at once instead of burning its retries. The
    message names the place and the fix.
    """

    def __init__(self, message: str, *, path: str | None = None,
                 fix: str | None = None) -> None:
        self.reason = message
        self.path = path
        self.fix = fix
        text = f"{path}: {message}" if path else message
        super().__init__(f"{text}. Fix: {fix}" if fix else text)

    def __reduce__(self) -> tuple[Any, ...]:  # keep the fields across process boundaries
        return (_rebuild_storage, (type(self), self.reason, self.path, self.fix))


def _rebuild_storage(cls: type[StorageError], message: str, path: str | None,
                     fix: str | None) -> StorageError:
    return cls(message, path=path, fix=fix)


class CorruptObject(StorageError):
    """A stored object's bytes no longer hash to its name (bit rot, a torn write, an edit).

    ``digest`` is the name it should have; ``actual`` what its bytes hash to now (None
    when it is missing).
    """

    def __init__(self, message: str, *, path: str | None = None, fix: str | None = None,
                 digest: str = "", actual: str | None = None) -> None:
        self.digest = digest
        self.actual = actual
        super().__init__(message, path=path, fix=fix)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_corrupt, (self.reason, self.path, self.fix, self.digest, self.actual))


def _rebuild_corrupt(message: str, path: str | None, fix: str | None, digest: str,
                     actual: str | None) -> CorruptObject:
    return CorruptObject(message, path=path, fix=fix, digest=digest, actual=actual)


class RunError(ReliabilityError):
    """A run did not finish successfully."""

    def __init__(self, message: str, *, run_id: str | None = None) -> None:
        self.run_id = run_id
        super().__init__(message)


class StepFailed(RunError):
    """A step failed after exhausting its retries."""

    def __init__(self, message: str, *, run_id: str | None = None, step: str | None = None,
                 error_type: str | None = None) -> None:
        self.step = step
        self.error_type = error_type
        super().__init__(message, run_id=run_id)


class RunCancelled(RunError):
    """The run was cancelled (SIGINT/SIGTERM); it can be resumed from the ledger."""


class ContractError(ReliabilityError):
    """Base of contract problems."""


class ContractViolation(ContractError):
    """Data broke a contract.

    ``failures`` is a list of dicts (one per failing check) with keys ``contract``,
    ``column``, ``check``, ``failure_count`` and ``failure_cases`` (a short sample),
    so reports, metrics and runbooks consume it as data, not text.
    """

    def __init__(self, message: str, *, contract: str = "", step: str = "",
                 direction: str = "output", failures: Sequence[dict[str, Any]] = ()) -> None:
        self.contract = contract
        self.step = step
        self.direction = direction
        self.failures = list(failures)
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:  # keep the data across process boundaries
        return (_rebuild_violation, (str(self), self.contract, self.step, self.direction,
                                     self.failures))


def _rebuild_violation(message: str, contract: str, step: str, direction: str,
                       failures: list[dict[str, Any]]) -> ContractViolation:
    return ContractViolation(message, contract=contract, step=step, direction=direction,
                             failures=failures)


class WiringError(ContractError, TypeError):
    """A producer's output contract does not satisfy its consumer's input contract."""


class ChaosError(ReliabilityError):
    """Base of chaos-layer problems."""


class BlastRadiusError(ChaosError, PermissionError):
    """A fault was aimed at a target outside the experiment's allow-list."""


class SLAError(ReliabilityError):
    """Base of SLA monitor problems."""


class RunbookError(SLAError):
    """A runbook template could not be rendered (missing variable, sandbox escape)."""
