"""The journal of an experiment: everything that happened, as JSON.

``Journal.data`` is plain JSON-able data (written with sorted keys). For the same seed
everything but timestamps, durations, run ids and pids is the same;
:meth:`Journal.normalized` keeps only that deterministic part, for comparing two runs.
"""

from __future__ import annotations

import json
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from reliability._record import record
from reliability._spec import parse_model, read_text
from reliability.errors import ConfigError

__all__ = ["FORMAT", "Journal", "resilience_score"]

FORMAT = "reliability.chaos.journal/1"
VERDICTS = ("passed", "deviated", "aborted", "failed")


def resilience_score(data: dict[str, Any]) -> float:
    """0-100: half for the steady-state probes that held after the method, half for the
    injected faults whose step still committed an output; aborted methods score half."""
    after = data.get("steady_state", {}).get("after", [])
    probes = [p for p in after if not p.get("skipped")]
    probe_part = (sum(1 for p in probes if p["ok"]) / len(probes)) if probes else 1.0
    faults = [f for f in data.get("faults", []) if f.get("step")]
    outputs = (data.get("run") or {}).get("outputs", {})
    fault_part = (sum(1 for f in faults if f["step"] in outputs) / len(faults)) if faults else 1.0
    score = 50.0 * probe_part + 50.0 * fault_part
    if data.get("status") == "aborted":
        score /= 2
    if data.get("status") == "failed":
        score = 0.0
    return round(score, 1)


Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
_FIX = "pass the JSON file `reliability chaos run` wrote (or correct the edited value)"


class _Shape(BaseModel):
    """What readers of a journal rely on; anything else in it is kept as it is."""

    model_config = ConfigDict(extra="allow", strict=False)


class _Attempt(_Shape):
    step: str
    attempt: int | None = None
    status: str
    start: Seconds
    end: Seconds
    error: str | None = None
    error_type: str | None = None


class _Probe(_Shape):
    probe: str
    ok: bool
    detail: str = ""
    skipped: bool = False


class _Fault(_Shape):
    fault: str | None = None
    type: str | None = None
    step: str | None = None
    target: str | None = None
    t: Seconds = 0.0


class _Rollback(_Shape):
    action: str | None = None
    proxy: str | None = None
    toxic: str | None = None
    ok: bool = False


class _Run(_Shape):
    run_id: str | None = None
    status: str | None = None
    outputs: dict[str, str] = Field(default_factory=dict)
    failed: dict[str, Any] = Field(default_factory=dict)
    skipped: list[str] = Field(default_factory=list)


class _Experiment(_Shape):
    title: str = "experiment"
    description: str | None = ""


class _JournalShape(_Shape):
    format: str
    status: str = "failed"
    score: float = Field(default=0.0, ge=0, le=100, allow_inf_nan=False)
    seed: int | None = None
    experiment: _Experiment = Field(default_factory=_Experiment)
    attempts: list[_Attempt] = Field(default_factory=list)
    faults: list[_Fault] = Field(default_factory=list)
    steady_state: dict[str, list[_Probe]] = Field(default_factory=dict)
    rollbacks: list[_Rollback] = Field(default_factory=list)
    baseline: _Run | None = None
    run: _Run | None = None


@record
class Journal:
    """One experiment's record; ``data`` is the JSON document."""

    data: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return str(self.data.get("status", "failed"))

    @property
    def ok(self) -> bool:
        return self.status == "passed"

    @property
    def score(self) -> float:
        return float(self.data.get("score", 0.0))

    @property
    def faults(self) -> list[dict[str, Any]]:
        return list(self.data.get("faults", []))

    def to_json(self) -> str:
        return json.dumps(self.data, indent=2, sort_keys=True, default=str)

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(p.suffix + ".tmp")
        tmp.write_text(self.to_json() + "\n", encoding="utf-8")
        tmp.replace(p)
        return p

    @classmethod
    def load(cls, path: str | Path) -> Journal:
        """Read a journal; a missing, malformed or hand-edited one that readers cannot use
        (a missing attempt status, a start that is no number...) is a ConfigError naming
        the file and the key path."""
        file = str(path)
        text = read_text(path, what="journal", fix=_FIX)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"not a JSON journal ({exc.msg})", file=file, fix=_FIX) from None
        except (ValueError, RecursionError):  # 4300+ digit numbers, deep nesting
            raise ConfigError("not a JSON journal (a number too long or nesting too deep)",
                              file=file, fix=_FIX) from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(f"not a chaos journal (format is not {FORMAT!r})", file=file,
                              path=["format"], fix="pass a journal written by this version")
        parse_model(data, _JournalShape, file=file)
        return cls(data)

    def normalized(self) -> dict[str, Any]:
        """The deterministic part: what a replay with the same seed must reproduce."""
        d = self.data
        exp_id = str(d.get("experiment_id") or "")

        def same(name: Any) -> Any:  # toxic names carry the random experiment id
            return name.replace(exp_id, "{experiment_id}") if exp_id and isinstance(
                name, str) else name

        run = d.get("run") or {}
        base = d.get("baseline") or {}
        return {
            "experiment": d.get("experiment", {}).get("title"),
            "seed": d.get("seed"),
            "status": d.get("status"),
            "score": d.get("score"),
            "aborted": bool(d.get("aborted")),
            "baseline_outputs": base.get("outputs"),
            "run": {k: run.get(k) for k in ("status", "outputs", "skipped")} | {
                "failed": sorted(run.get("failed", {}))},
            "faults": sorted(
                ({k: f.get(k) for k in ("fault", "type", "step", "attempt", "source",
                                        "target", "error", "toxic", "corruption")}
                 for f in d.get("faults", [])),
                key=lambda f: json.dumps(f, sort_keys=True, default=str)),
            "steps": {s: [a["status"] for a in attempts]
                      for s, attempts in sorted(_by_step(d.get("attempts", [])).items())},
            "steady_state": {
                phase: [(p["probe"], p["ok"]) for p in d.get("steady_state", {}).get(phase, [])]
                for phase in ("before", "after")},
            "rollbacks": sorted((r.get("action"), r.get("proxy"), same(r.get("toxic")),
                                 r.get("ok")) for r in d.get("rollbacks", [])),
        }


def _by_step(attempts: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for a in sorted(attempts, key=lambda a: (a["step"], a.get("attempt") or 0)):
        out.setdefault(a["step"], []).append(a)
    return out
