"""Recorded inputs for contract tests: a good run's step outputs, kept with the contracts.

    reliability contracts snapshot [-p KEY=VALUE ...]

runs the pipeline once (a real run, assembled as every run is, in a temporary home, under
its contracts; ``reliability init`` records one for the project it creates) and writes
``contracts/<pipeline>/snapshot/``: ``manifest.json`` (pipeline, parameters, when, and per
step the file, codec, size and sha256) plus one file per step output the contract tests
need — the outputs of the steps that feed a contracted step and of the steps whose output
is contracted. Commit it with the contracts; ``reliability contracts test`` and
``pytest --reliability-contracts`` then inject mutations into these recorded values and run
generated-input tests with the recorded parameters, without running the pipeline (offline,
nothing written to the working tree). Files are encoded as the artifact store encodes step
outputs (JSON, bytes, the file itself, or a pickle for frames and models): review changes to
them as you review code.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reliability._record import record
from reliability._sha import sha256
from reliability.errors import ConfigError, ReliabilityError

if TYPE_CHECKING:
    from reliability.contracts.loader import ContractSet
    from reliability.pipeline import Pipeline
    from reliability.project import Project

__all__ = ["MANIFEST", "SNAPSHOT_DIR", "Snapshot", "load_snapshot", "needed_steps",
           "record_snapshot", "snapshot_dir"]

SNAPSHOT_DIR = "snapshot"
MANIFEST = "manifest.json"
_EXT = {"json": ".json", "bytes": ".bin", "pickle": ".pkl"}
_REFRESH = "record it again with `reliability contracts snapshot` and commit it"


@record(slots=True)
class Snapshot:
    """Recorded step outputs (``outputs``: step -> value) and the run's parameters."""

    pipeline: str
    params: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)
    directory: Path | None = None
    recorded_at: str = ""


def snapshot_dir(contracts_dir: str | Path, pipeline: str) -> Path:
    """``contracts/<pipeline>/snapshot`` (or ``contracts/snapshot`` for a flat folder)."""
    base = Path(contracts_dir)
    if base.name != pipeline and (base / pipeline).is_dir():
        base = base / pipeline
    return base / SNAPSHOT_DIR


def needed_steps(pipeline: Pipeline, contracts: ContractSet) -> list[str]:
    """Steps whose outputs the contract tests use, in run order."""
    need: set[str] = set()
    for c in contracts:
        need.update(pipeline.steps[c.step].inputs.values())
        if c.direction == "output":
            need.add(c.step)
    return [s for s in pipeline.validate() if s in need]


def _suffix(contracts: ContractSet, step: str) -> str:
    for c in contracts:
        if c.step == step and c.direction == "output" and c.spec.file is not None:
            return c.spec.file.suffix or ".file"
    return ".file"


def record_snapshot(pipeline: Pipeline, contracts: ContractSet, directory: str | Path,
                    params: Mapping[str, Any] | None = None, *, workers: int | None = None,
                    project: Project | None = None) -> Snapshot:
    """Run ``pipeline`` once under ``contracts`` (assembled as every run is, in a
    temporary home) and record what the contract tests need in ``directory``."""
    from reliability.assembly import RunOptions, assemble
    from reliability.contracts.hook import ContractHook
    from reliability.runner.store import encode

    p = pipeline.make_params(params)
    dump = getattr(p, "model_dump", None)
    pdict = dict(dump(mode="json")) if callable(dump) else dict(params or {})
    steps = needed_steps(pipeline, contracts)
    out = Path(directory)
    hook = ContractHook(contracts, params_model=pipeline.params_model)
    with tempfile.TemporaryDirectory(prefix="contract-snapshot-") as home, assemble(
            pipeline, RunOptions(home=home, workers=workers, contracts=False, sla=False,
                                 hooks=[hook]), project=project) as asm:
        result = asm.run(p, resume=False, source="contracts snapshot")
        if not result.ok:
            step, err = next(iter(result.failed.items()), ("?", result.status))
            raise ReliabilityError(
                f"the run to record failed at step {step!r}: {err}. Fix: make the "
                "pipeline succeed (is its upstream reachable?), then record again")
        rows = {r["step"]: r for r in asm.ledger.steps(result.run_id)}
        values = {s: asm.store.load(rows[s]["output_hash"], rows[s]["output_codec"])
                  for s in steps}
        out.mkdir(parents=True, exist_ok=True)
        _clear(out)
        entries: dict[str, Any] = {}
        for step, value in values.items():
            staged = out / f".{step}.partial"
            digest, codec, size = encode(value, staged)
            name = f"{step}{_EXT.get(codec) or _suffix(contracts, step)}"
            staged.replace(out / name)
            entries[step] = {"file": name, "codec": codec, "bytes": size, "sha256": digest}
    when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    manifest = {"pipeline": pipeline.name, "recorded_at": when, "params": pdict,
                "steps": entries}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return Snapshot(pipeline.name, pdict, values, out, when)


def _clear(directory: Path) -> None:
    """Remove the files a previous recording listed (nothing else in the folder)."""
    old = directory / MANIFEST
    if not old.is_file():
        return
    try:
        listed = json.loads(old.read_text()).get("steps", {})
    except (ValueError, AttributeError):
        return
    for entry in listed.values():
        name = str(entry.get("file", ""))
        if name and "/" not in name and name not in (".", ".."):
            (directory / name).unlink(missing_ok=True)


def load_snapshot(directory: str | Path, pipeline: Pipeline, contracts: ContractSet,
                  scratch: Path) -> Snapshot:
    """The recorded values, verified against the manifest; files (``file`` codec) are
    copied into ``scratch`` so tests that corrupt them never touch the snapshot."""
    from reliability.runner.store import decode

    d = Path(directory)
    manifest_file = d / MANIFEST
    if not manifest_file.is_file():
        raise ConfigError("no recorded inputs for the contract tests", file=str(d),
                          fix=f"record them with `reliability contracts snapshot` and "
                              f"commit {d}")
    try:
        manifest = json.loads(manifest_file.read_text())
        entries = dict(manifest["steps"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"unreadable snapshot manifest ({exc})", file=str(manifest_file),
                          fix=_REFRESH) from None
    if manifest.get("pipeline") != pipeline.name:
        raise ConfigError(f"the snapshot was recorded for pipeline "
                          f"{manifest.get('pipeline')!r}, not {pipeline.name!r}",
                          file=str(manifest_file), fix=_REFRESH)
    missing = [s for s in needed_steps(pipeline, contracts) if s not in entries]
    if missing:
        raise ConfigError(f"the snapshot has no recorded output for step(s) "
                          f"{', '.join(missing)}, which the contracts now need",
                          file=str(manifest_file), fix=_REFRESH)
    outputs: dict[str, Any] = {}
    for step, entry in entries.items():
        path = d / str(entry["file"])
        try:
            data = path.read_bytes()
        except OSError:
            raise ConfigError(f"recorded output of step {step!r} is missing", file=str(path),
                              fix=_REFRESH) from None
        if sha256(data).hexdigest() != entry["sha256"]:
            raise ConfigError(f"recorded output of step {step!r} changed since it was "
                              "recorded (its sha256 differs from the manifest)",
                              file=str(path), fix=_REFRESH)
        if entry["codec"] == "file":
            copy = scratch / step / path.name
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, copy)
            outputs[step] = copy
        else:
            outputs[step] = decode(path, str(entry["codec"]))
    return Snapshot(pipeline.name, dict(manifest.get("params") or {}), outputs, d,
                    str(manifest.get("recorded_at", "")))
