"""Fault specs: what to break, where, when and for how long.

Every fault is aimed at a step (or at the network path a step uses) and says when it fires:

* ``attempts`` — which attempts of the step it hits (``[1]`` by default, so retries can
  recover; ``"all"`` hits every attempt);
* ``probability`` — drawn from the experiment seed, so the same seed fires the same faults;
* ``after`` — seconds after the attempt started, or ``"50%"`` of the step's fault-free
  duration (measured by the baseline run).

Every fault declares where it runs (:attr:`FaultBase.where`), and that one declaration
decides which half of chaos applies it:

* ``worker`` — the :class:`~reliability.chaos.hook.ChaosHook`, inside the attempt it hits:
  applied around the step body and undone in a ``finally`` when that attempt ends, before
  the worker runs anything else, so no fault's effect reaches another step;
* ``controller`` — the :class:`~reliability.chaos.controller.Controller` in the runner's
  process: what a worker cannot do to itself (a SIGKILL), and network faults of the whole
  method (no ``step``). Its timers for an attempt are cancelled when the attempt ends.

A network fault with a ``duration`` is the one exception to "lasts its attempt": it lasts
that many seconds of wall-clock time, across the attempts that follow (its lease expires in
the controller), or until the method ends, whichever comes first.

========================= ============ ==============================================
type                      where        effect
========================= ============ ==============================================
``exception``             worker       raises ``error`` before (or after) the body
``latency``               worker       sleeps ``seconds`` (+/- ``jitter``) before the body
``hang``                  worker       never returns (the step's timeout must stop it);
                                       the controller reports it
``kill_worker``           controller   SIGKILL of the worker process mid-step
``network``               worker /     a Toxiproxy toxic (or ``down``) on a proxy: for a
                          controller   step inside its attempt, without one the method
``data``                  worker       corrupts an input before the body or the output
``disk_quota``            worker       files the attempt writes are capped at ``bytes``
``memory_limit``          worker       address space capped at current + ``headroom_mb``
========================= ============ ==============================================
"""

from __future__ import annotations

import random
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from reliability._spec import Spec

__all__ = [
    "ERRORS",
    "FAULT_TYPES",
    "TOXICS",
    "DataFault",
    "DiskQuota",
    "ExceptionFault",
    "Fault",
    "FaultBase",
    "Hang",
    "KillWorker",
    "Latency",
    "MemoryLimit",
    "NetworkFault",
    "Where",
    "fires",
    "jitter",
    "resolve_after",
]

ERRORS: dict[str, type[BaseException]] = {
    e.__name__: e for e in (
        ConnectionError, ConnectionResetError, ConnectionRefusedError, TimeoutError, OSError,
        RuntimeError, ValueError, KeyError, MemoryError, PermissionError)
}
"""Exception types an ``exception`` fault may raise (builtins only: they pickle anywhere)."""

TOXICS: dict[str, frozenset[str]] = {
    "latency": frozenset({"latency", "jitter"}),
    "bandwidth": frozenset({"rate"}),
    "timeout": frozenset({"timeout"}),
    "reset_peer": frozenset({"timeout"}),
    "slow_close": frozenset({"delay"}),
    "slicer": frozenset({"average_size", "size_variation", "delay"}),
    "limit_data": frozenset({"bytes"}),
    "down": frozenset(),
}
"""Network fault kinds and the toxic attributes each accepts (``down`` disables the proxy)."""

#: Longest a fault may wait, sleep, hang or hold a toxic (one week).
MAX_SECONDS = 7 * 86400.0
#: Toxic attributes are Toxiproxy's int64 fields.
MAX_ATTRIBUTE = 2**63 - 1

Where = Literal["worker", "controller"]
"""Which half of chaos applies a fault: the hook inside the attempt, or the controller."""

CORRUPTIONS = ("nulls", "out_of_range", "drop_column", "rename_column", "add_column",
               "dtype_flip", "duplicates", "empty", "late_partition", "duplicate_partition")


class FaultBase(Spec):
    """Fields every fault has."""

    name: str = Field(default="",
                      description="unique within the experiment; defaults to TYPE-INDEX")
    step: str | None = None
    probability: float = Field(default=1.0, ge=0.0, le=1.0)
    attempts: list[Annotated[int, Field(ge=1)]] | Literal["all"] = Field(
        default_factory=lambda: [1])
    after: float | str = Field(default=0.0,
                               description="seconds, or 'N%' of the baseline step time")

    @field_validator("after")
    @classmethod
    def _after(cls, v: float | str) -> float | str:
        if isinstance(v, str):
            num = v.strip().removesuffix("%")
            try:
                pct = float(num)
            except ValueError:
                raise ValueError(f"after={v!r} must be seconds or a percentage like '50%'"
                                 ) from None
            if not v.strip().endswith("%") or not 0 <= pct <= 100:
                raise ValueError(f"after={v!r} must be a percentage between '0%' and '100%'")
        elif not 0 <= v <= MAX_SECONDS:
            raise ValueError(f"after={v} must be between 0 and {MAX_SECONDS:g} seconds")
        return v

    runs_in: ClassVar[Where] = "worker"
    reported_by_controller: ClassVar[bool] = False
    """True when the attempt it hits cannot report it (it never returns)."""

    @property
    def where(self) -> Where:
        """Where this fault is applied and undone (see the module docstring)."""
        return self.runs_in


class ExceptionFault(FaultBase):
    type: Literal["exception"] = "exception"
    step: str
    error: str = "RuntimeError"
    message: str = "injected fault"
    when: Literal["before", "after"] = "before"

    @field_validator("error")
    @classmethod
    def _error(cls, v: str) -> str:
        if v not in ERRORS:
            raise ValueError(f"error={v!r} is not an allowed exception; use one of "
                             f"{sorted(ERRORS)}")
        return v


class Latency(FaultBase):
    type: Literal["latency"] = "latency"
    step: str
    seconds: float = Field(gt=0, le=MAX_SECONDS)
    jitter: float = Field(default=0.0, ge=0, le=MAX_SECONDS)


class Hang(FaultBase):
    type: Literal["hang"] = "hang"
    reported_by_controller: ClassVar[bool] = True
    step: str
    seconds: float | None = Field(default=None, gt=0, le=MAX_SECONDS,
                                  description="None: never returns")


class KillWorker(FaultBase):
    type: Literal["kill_worker"] = "kill_worker"
    runs_in: ClassVar[Where] = "controller"
    step: str


class NetworkFault(FaultBase):
    type: Literal["network"] = "network"
    proxy: str
    toxic: Literal["latency", "bandwidth", "timeout", "reset_peer", "slow_close", "slicer",
                   "limit_data", "down"]
    attributes: dict[str, int] = Field(default_factory=dict)
    stream: Literal["upstream", "downstream"] = "downstream"
    toxicity: float = Field(default=1.0, ge=0.0, le=1.0)
    duration: float | None = Field(default=None, gt=0, le=MAX_SECONDS,
                                   description="seconds of wall-clock time it lasts, across "
                                   "attempts; None: until its attempt (or the method, "
                                   "without a step) ends")

    @property
    def where(self) -> Where:
        return "worker" if self.step is not None else "controller"

    @model_validator(mode="after")
    def _attrs(self) -> NetworkFault:
        allowed = TOXICS[self.toxic]
        for key in self.attributes:
            if key not in allowed:
                raise ValueError(
                    f"toxic {self.toxic!r} has no attribute {key!r}; allowed: "
                    f"{sorted(allowed) or 'none'}")
            if self.attributes[key] < 0:
                raise ValueError(f"toxic attribute {key}={self.attributes[key]} must be >= 0")
            if self.attributes[key] > MAX_ATTRIBUTE:
                raise ValueError(f"toxic attribute {key} is larger than {MAX_ATTRIBUTE} (a "
                                 "Toxiproxy int64); give a realistic value")
        return self


class DataFault(FaultBase):
    type: Literal["data"] = "data"
    step: str
    target: Literal["input", "output"] = "output"
    input: str | None = Field(default=None, description="which input parameter (default: all)")
    corruption: Literal[
        "nulls", "out_of_range", "drop_column", "rename_column", "add_column", "dtype_flip",
        "duplicates", "empty", "late_partition", "duplicate_partition"] | None = None
    mutation: str | None = Field(default=None, description="a mutation derived from the step's "
                                 "contract (reliability.contracts.mutations)")
    columns: list[str] = Field(default_factory=list)
    fraction: float = Field(default=0.1, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _one_kind(self) -> DataFault:
        if (self.corruption is None) == (self.mutation is None):
            raise ValueError("a data fault needs exactly one of 'corruption' "
                             f"(one of {list(CORRUPTIONS)}) or 'mutation'")
        return self


class DiskQuota(FaultBase):
    type: Literal["disk_quota"] = "disk_quota"
    step: str
    bytes: int = Field(ge=0, le=2**62)


class MemoryLimit(FaultBase):
    type: Literal["memory_limit"] = "memory_limit"
    step: str
    headroom_mb: int = Field(default=64, ge=1, le=2**30)


Fault = Annotated[
    ExceptionFault | Latency | Hang | KillWorker | NetworkFault | DataFault | DiskQuota
    | MemoryLimit,
    Field(discriminator="type"),
]

FAULT_TYPES: dict[str, type[FaultBase]] = {
    "exception": ExceptionFault, "latency": Latency, "hang": Hang, "kill_worker": KillWorker,
    "network": NetworkFault, "data": DataFault, "disk_quota": DiskQuota,
    "memory_limit": MemoryLimit,
}


def _rng(seed: int, *parts: Any) -> random.Random:
    return random.Random("|".join(str(p) for p in (seed, *parts)))


def fires(fault: FaultBase, seed: int, attempt: int) -> bool:
    """Whether ``fault`` hits ``attempt`` — a pure function of the seed (replayable)."""
    if fault.attempts != "all" and attempt not in fault.attempts:
        return False
    if fault.probability >= 1.0:
        return True
    return _rng(seed, fault.name, fault.step or "*", attempt).random() < fault.probability


def jitter(fault: FaultBase, seed: int, attempt: int, spread: float) -> float:
    """A seeded offset in ``[-spread, spread]`` for ``fault`` on ``attempt``."""
    if not spread:
        return 0.0
    return _rng(seed, fault.name, "jitter", attempt).uniform(-spread, spread)


def resolve_after(fault: Any, durations: dict[str, float]) -> Any:
    """Turn ``after: 'N%'`` into seconds using the baseline step ``durations``."""
    after = fault.after
    if not isinstance(after, str):
        return fault
    pct = float(after.strip().removesuffix("%")) / 100.0
    base = durations.get(fault.step or "", 0.0)
    return fault.model_copy(update={"after": round(base * pct, 4)})
