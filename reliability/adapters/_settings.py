"""What a host task needs of the project, read once and cached in the home.

Every task of a process-per-task host (KFP, Metaflow) would otherwise find and validate
``reliability.yaml``, the pipeline's contracts and its SLA file again -- loading the
validation library, YAML and the contract engine -- only to learn the same few facts: the
home, the store, whether the pipeline has contracts, its steps' duration limits. Those facts
are kept as JSON under ``<home>/cache/``, keyed by what they were derived from (the project
file's bytes, the contract and SLA files' names, sizes and modification times, the
pipeline's steps and the bridge's options); a change to any of them is a new key, read
and validated in full again. The cache lives in the home given to the bridge or in
``RELIABILITY_HOME``; without either, the home itself comes from the project file and
nothing is cached.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reliability._record import record
from reliability._sha import sha256
from reliability.adapters._watch import Limits
from reliability.pipeline import code_fingerprint, code_version

if TYPE_CHECKING:
    from reliability.pipeline import Pipeline
    from reliability.project import Project

__all__ = ["Settings", "pipeline_slas", "resolve"]

_SCHEMA = "bridge-settings-1"
_PROJECT_FILE = "reliability.yaml"  # reliability.project.PROJECT_FILE (not imported: cost)


@record(frozen=True)
class Settings:
    home: Path
    store: dict[str, Any] | None
    """The project's ``store:`` (``url`` resolved, ``options``); None: ``HOME/store``."""
    contracts: bool
    """The project has contracts for the pipeline (its hook must be built)."""
    limits: Limits
    code_version: str | None
    """The pipeline's :func:`~reliability.pipeline.code_version`; None: not cacheable."""


def pipeline_slas(project: Project, pipeline: Pipeline) -> Any:
    """The project's :class:`~reliability.sla.spec.SLASet` of ``pipeline``, or None."""
    sla_file = project.sla_file
    if sla_file is None or not sla_file.exists():
        return None
    from reliability.sla import load_slas

    loaded = load_slas(sla_file)
    if loaded.pipeline != pipeline.name:
        return None
    loaded.check_steps(pipeline.steps)
    return loaded


def resolve(pipeline: Pipeline, home: Path | None, *, options: Iterable[Any],
            project: Callable[[], Project],
            has_contracts: Callable[[Project], bool], sla: bool) -> Settings:
    """The settings of a bridge of ``pipeline`` (``project`` loads the project, once).

    ``options`` are the bridge's options that change the answer; ``has_contracts`` says if
    the project has contracts for the pipeline.
    """
    env_home = os.environ.get("RELIABILITY_HOME")
    cache_home = home if home is not None else Path(env_home) if env_home else None
    found = _project_file()
    first = _key(_SCHEMA, str(found[0]), found[1], env_home, str(home), str(Path.cwd()))
    paths = _cached(cache_home, first, lambda: _paths(project(), home))
    if paths is None:  # not cacheable (store options): read the project every time
        paths = _paths(project(), home, force=True)
        assert paths is not None
    steps = sorted((n, sorted(s.inputs.items()), sorted(s.after))
                   for n, s in pipeline.steps.items())
    contracts = Path(paths["contracts"])
    code = code_fingerprint(pipeline)
    second = _key(first, json.dumps(steps), pipeline.name, json.dumps(list(options)), sla,
                  _fingerprint(contracts), _fingerprint(contracts / pipeline.name),
                  _fingerprint(paths["sla_dir"]), code)
    facts = _cached(Path(paths["home"]), second, lambda: {
        "contracts": has_contracts(project()),
        "limits": Limits.of(pipeline_slas(project(), pipeline) if sla else None).to_json(),
        "code_version": code_version(pipeline) if code is not None else None})
    assert facts is not None
    return Settings(Path(paths["home"]), paths["store"], bool(facts["contracts"]),
                    Limits.from_json(facts["limits"]), facts.get("code_version"))


def _paths(project: Project, home: Path | None, *, force: bool = False
           ) -> dict[str, Any] | None:
    store = project.spec.store
    if store is not None and store.options and not force:
        return None  # its options may hold credentials: not copied into the cache
    spec = None
    if store is not None:
        from reliability.runner.store import is_remote

        spec = {"url": store.url if is_remote(store.url) else str(project.root / store.url),
                "options": dict(store.options)}
    sla_file = project.sla_file
    return {"home": str(home if home is not None else project.home), "store": spec,
            "contracts": str(project.contracts_dir),
            "sla_dir": str(sla_file.parent) if sla_file is not None else None}


def _project_file() -> tuple[Path, bytes | None]:
    """The project file ``find_project`` reads (its bytes), else the directory it would
    take as the root."""
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        f = d / _PROJECT_FILE
        if os.path.lexists(f):
            try:
                return f, f.read_bytes()
            except OSError:
                return f, None  # find_project says what is wrong with it
    return here, None


def _fingerprint(directory: str | Path | None) -> list[Any]:
    """Names, sizes and modification times of the files in ``directory``."""
    if not directory or not os.path.isdir(directory):
        return [str(directory), "absent"]
    try:
        with os.scandir(directory) as entries:
            return sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in entries
                          if e.is_file())
    except OSError:
        return [str(directory), "unreadable"]


def _key(*parts: Any) -> str:
    sha = sha256()
    for part in parts:
        data = part if isinstance(part, bytes) else repr(part).encode()
        sha.update(len(data).to_bytes(8, "big") + data)
    return sha.hexdigest()


def _cached(home: Path | None, key: str, compute: Callable[[], dict[str, Any] | None]
            ) -> dict[str, Any] | None:
    """``compute()``, kept as ``<home>/cache/bridge-<key>.json`` (written atomically)."""
    if home is None:
        return compute()
    path = home / "cache" / f"bridge-{key[:32]}.json"
    try:
        found = json.loads(path.read_text())
        if isinstance(found, dict) and found.get("key") == key:
            return found["value"]  # type: ignore[no-any-return]
    except (OSError, ValueError, KeyError):
        pass
    value = compute()
    if value is None:
        return None
    import tempfile

    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".bridge-", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump({"key": key, "value": value}, f)
        os.replace(tmp, path)
    except OSError:  # a read-only home: computed again next time
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return value
    _prune(path.parent, keep=path)
    return value


_KEEP = 64
"""Cache entries kept per home: a new one (the settings changed) drops the oldest beyond
this; an entry still in use that was dropped is computed again when next needed."""


def _prune(directory: Path, *, keep: Path) -> None:
    import time

    try:
        with os.scandir(directory) as entries:
            found = [(e.stat().st_mtime, e.path, e.name) for e in entries if e.is_file()]
    except OSError:
        return
    stale_tmp = time.time() - 3600  # a writer that died between mkstemp and replace
    drop = [p for m, p, n in found if n.startswith(".bridge-") and m < stale_tmp]
    written = sorted((m, p) for m, p, n in found
                      if n.startswith("bridge-") and p != str(keep))
    drop += [p for _, p in written[:max(0, len(written) + 1 - _KEEP)]]
    for p in drop:
        with contextlib.suppress(OSError):
            os.unlink(p)
