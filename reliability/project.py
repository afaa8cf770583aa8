"""The project file ``reliability.yaml``: where a repository keeps its pipeline and assets.

    pipeline: pipelines.reference:pipeline   # module:attribute of the Pipeline
    home: .reliability                       # ledger.db and the artifact store
                                             # (RELIABILITY_HOME overrides it)
    contracts: contracts                     # YAML data contracts and SLAs
    chaos: chaos                             # chaos experiments
    runbooks: runbooks                       # Jinja runbook templates (override built-ins)
    workers: 2
    executor: local                          # or dask: attempts on Dask distributed
    dask:
      scheduler: tcp://10.0.0.5:8786         # an existing cluster (default: a LocalCluster)
    store:                                   # default: HOME/store on this machine
      url: s3://bucket/prefix                # or a directory every worker mounts
      options: {endpoint_url: "http://minio:9000"}   # fsspec storage options
    serve:                                   # `reliability serve` (runbook_url points here)
      host: 127.0.0.1
      port: 8080
      url: https://oncall.example            # how users reach it, if not http://host:port

Every key has a default, so a repository without the file still works from its root.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from reliability._spec import Spec, load_model
from reliability.errors import ConfigError, DefinitionError

if TYPE_CHECKING:
    from reliability.pipeline import Pipeline

__all__ = ["PROJECT_FILE", "DaskSpec", "Project", "ProjectSpec", "ServeSpec", "StoreSpec",
           "find_project"]

PROJECT_FILE = "reliability.yaml"


class ServeSpec(Spec):
    """Where ``reliability serve`` listens and how users and Alertmanager reach it."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/\S*)?$")

    @property
    def base_url(self) -> str:
        """``url``, else ``http://host:port``: the base of every generated runbook_url."""
        if self.url:
            return self.url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


class DaskSpec(Spec):
    """The Dask cluster of ``executor: dask`` (``--scheduler`` wins)."""

    scheduler: str | None = Field(default=None, pattern=r"^(tcp|tls|inproc|ucx)://\S+$")


class StoreSpec(Spec):
    """Where the artifact store lives: a directory (relative to the project root) or an
    object store URL (``s3://bucket/prefix``) with fsspec ``options``."""

    url: str = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)


class ProjectSpec(Spec):
    pipeline: str = "pipelines.reference:pipeline"
    home: str = ".reliability"
    contracts: str = "contracts"
    chaos: str = "chaos"
    runbooks: str = "runbooks"
    sla: str | None = None
    workers: int | None = Field(default=None, ge=1, le=512)
    executor: Literal["local", "dask"] | None = None
    dask: DaskSpec = DaskSpec()
    store: StoreSpec | None = None
    serve: ServeSpec = ServeSpec()

    @field_validator("pipeline")
    @classmethod
    def _reference(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*",
                            value):
            raise ValueError(f"{value!r} is not 'module:attribute' of a Pipeline; write e.g. "
                             "pipelines.reference:pipeline")
        return value


class Project:
    """A loaded project: paths resolved against the project root."""

    def __init__(self, root: Path, spec: ProjectSpec, file: Path | None = None) -> None:
        self.root = root
        self.spec = spec
        self.file = file

    @property
    def pipeline_ref(self) -> str:
        return self.spec.pipeline

    def load_pipeline(self, ref: str | None = None) -> Pipeline:
        """The Pipeline ``ref`` names (``module:attr``), or the project's ``pipeline:``;
        a project pipeline that cannot be loaded is a ConfigError naming the file and key."""
        from reliability.pipeline import load_pipeline

        if ref:
            return load_pipeline(ref)
        try:
            return load_pipeline(self.pipeline_ref)
        except DefinitionError as exc:
            reason, _, fix = str(exc).partition(". Fix: ")
            raise ConfigError(reason, file=str(self.file or self.root / PROJECT_FILE),
                              path=["pipeline"], fix=fix or "write module:attribute of the "
                              "Pipeline, e.g. pipelines.reference:pipeline") from None

    @property
    def home(self) -> Path:
        """``RELIABILITY_HOME`` if set, else ``home:`` of the project file (``--home`` on a
        command line wins over both)."""
        env = os.environ.get("RELIABILITY_HOME")
        return Path(env) if env else self.root / self.spec.home

    def open_store(self, home: Path | None = None) -> Any:
        """The artifact store: ``store:`` of the project file, else ``HOME/store``."""
        from reliability.runner.store import is_remote, open_store

        if self.spec.store is None:
            return open_store((home or self.home) / "store")
        url = self.spec.store.url
        if not is_remote(url):
            url = str(self.root / url)
        return open_store(url, self.spec.store.options)

    @property
    def contracts_dir(self) -> Path:
        return self.root / self.spec.contracts

    @property
    def chaos_dir(self) -> Path:
        return self.root / self.spec.chaos

    @property
    def runbooks_dir(self) -> Path:
        return self.root / self.spec.runbooks

    @property
    def sla_file(self) -> Path | None:
        return self.root / self.spec.sla if self.spec.sla else None


def find_project(start: str | Path | None = None) -> Project:
    """Load ``reliability.yaml`` from ``start`` or its parents; defaults if there is none.

    A ``reliability.yaml`` that exists but is no readable regular file (a directory, a
    symbolic link loop, a device such as ``/dev/null``) is a ConfigError, not ignored."""
    here = Path(start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        f = d / PROJECT_FILE
        if os.path.lexists(f):
            return Project(d, load_model(f, ProjectSpec), f)
    return Project(here, ProjectSpec(), None)
