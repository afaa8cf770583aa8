"""Chaos experiments: typed YAML specs in the Chaos Toolkit vocabulary, checked before use.

    title: Killing the trainer mid-fit loses nothing
    seed: 7
    target:
      services:
        - {name: wine, start: "pipelines.wine_service:WineService", param: source,
           url: "http://{listen}/wine.csv"}
    steady-state-hypothesis:
      run_succeeds: true
      outputs_equal_baseline: true
    method:
      - {type: kill_worker, step: train, after: "50%"}
    rollbacks:
      - {type: reset_proxy}
    abort: {max_failed_attempts: 5}
    blast_radius: {steps: [ingest, train]}

:func:`load_experiment` turns a bad file into one :class:`~reliability.errors.ConfigError`
(file, key path, fix); :func:`check_experiment` checks the spec against the pipeline (steps
that exist) and the blast radius (:class:`~reliability.errors.BlastRadiusError`). Running
lives in :mod:`reliability.chaos.runner`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from reliability._spec import Spec, load_yaml, parse_model
from reliability.chaos.faults import (
    FAULT_TYPES,
    MAX_SECONDS,
    DataFault,
    Fault,
    Hang,
    NetworkFault,
)
from reliability.errors import BlastRadiusError, ConfigError, shorten
from reliability.pipeline import Pipeline

__all__ = [
    "LOOPBACK",
    "AbortSpec",
    "BlastRadius",
    "ExperimentSpec",
    "RollbackSpec",
    "ServiceSpec",
    "SteadyState",
    "TargetSpec",
    "check_experiment",
    "current_environment",
    "load_experiment",
]

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class ServiceSpec(Spec):
    """A dependency reached through a proxy named ``name``."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    start: str | None = Field(default=None, description="'module:Class' of a context manager with "
                              ".port, started for the experiment (local mode)")
    upstream: str | None = Field(default=None, description="host:port of a running service")
    param: str | None = Field(default=None, description="run parameter set to the proxied URL")
    url: str = Field(default="http://{listen}/", description="URL template; {listen} is the "
                     "proxy's host:port")

    @field_validator("start")
    @classmethod
    def _module_class(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", value):
            raise ValueError(f"start={value!r} is not 'module:Class' (e.g. "
                             "pipelines.wine_service:WineService)")
        return value

    @field_validator("url")
    @classmethod
    def _url_template(cls, value: str) -> str:
        import string

        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
        except ValueError as exc:
            raise ValueError(f"url={value!r} is not a URL template ({exc}); write e.g. "
                             "http://{listen}/data.csv") from None
        if any(f != "listen" for f in fields):
            raise ValueError(f"url={value!r} may use only the placeholder {{listen}} (the "
                             "proxy's host:port); write e.g. http://{listen}/data.csv")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> ServiceSpec:
        if (self.start is None) == (self.upstream is None):
            raise ValueError(f"service {self.name!r} needs exactly one of 'start' "
                             "(module:Class) or 'upstream' (host:port)")
        return self


class TargetSpec(Spec):
    mode: Literal["local", "external"] = "local"
    proxy_api: str | None = Field(default=None,
                                  description="Toxiproxy API URL; default: an embedded "
                                  "proxy server for the experiment")
    services: list[ServiceSpec] = Field(default_factory=list)
    workers: int | None = Field(default=None, ge=1, le=64)
    duration: float = Field(default=10.0, gt=0, le=MAX_SECONDS,
                            description="external mode: how long the method runs")


class SteadyState(Spec):
    """What 'working' means; checked before (on the baseline) and after the method."""

    title: str = "the pipeline delivers the same outputs as a fault-free run"
    run_succeeds: bool = True
    max_duration: float | None = Field(default=None, gt=0, le=MAX_SECONDS)
    outputs_equal_baseline: bool | list[str] = True
    single_commit_per_step: bool = True
    contracts_hold: bool = True
    max_failed_attempts: int | None = Field(default=None, ge=0)
    during: bool = Field(default=False, description="also check duration and failed attempts "
                         "continuously while the method runs")


class RollbackSpec(Spec):
    type: Literal["reset_proxy", "enable_proxy", "remove_toxics", "python"]
    proxy: str | None = None
    call: str | None = Field(default=None, description="'module:function' for type python")

    @model_validator(mode="after")
    def _needs(self) -> RollbackSpec:
        if self.type == "python" and not self.call:
            raise ValueError("a python rollback needs 'call: module:function'")
        if self.type in ("enable_proxy", "remove_toxics") and not self.proxy:
            raise ValueError(f"a {self.type} rollback needs 'proxy'")
        return self


class AbortSpec(Spec):
    max_failed_attempts: int | None = Field(default=None, ge=0)
    max_duration: float | None = Field(default=None, gt=0, le=MAX_SECONDS)


class BlastRadius(Spec):
    """What the experiment may touch; anything else is refused with BlastRadiusError."""

    environments: list[str] = Field(default_factory=lambda: ["local", "dev", "ci", "test"])
    steps: list[str] | None = Field(default=None, description="default: every step")
    proxies: list[str] | None = Field(default=None, description="default: the target's services")
    hosts: list[str] = Field(default_factory=lambda: list(LOOPBACK))


class ExperimentSpec(Spec):
    version: Literal[1] = 1
    title: str = Field(min_length=1)
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    pipeline: str | None = Field(default=None,
                                 description="module:attribute; default: the project's")
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0
    target: TargetSpec = Field(default_factory=TargetSpec)
    steady_state: SteadyState = Field(default_factory=SteadyState,
                                      alias="steady-state-hypothesis")
    method: list[Fault] = Field(min_length=1)
    rollbacks: list[RollbackSpec] = Field(default_factory=list)
    abort: AbortSpec = Field(default_factory=AbortSpec)
    blast_radius: BlastRadius = Field(default_factory=BlastRadius)

    @model_validator(mode="after")
    def _names(self) -> ExperimentSpec:
        seen: set[str] = set()
        named = []
        for i, f in enumerate(self.method):
            name = f.name or f"{f.type}-{i}"
            if name in seen:
                raise ValueError(f"fault name {name!r} is used twice; names must be unique")
            seen.add(name)
            named.append(f if f.name else f.model_copy(update={"name": name}))
        object.__setattr__(self, "method", named)
        return self


def _precheck(data: Any, file: str | None) -> None:
    """Unknown fault types get a precise message (pydantic's union error is vague)."""
    if not isinstance(data, dict):
        raise ConfigError(f"an experiment must be a mapping, not {type(data).__name__}",
                          file=file, fix="start the file with 'title:' and 'method:' keys")
    method = data.get("method")
    if not isinstance(method, list):
        return
    for i, entry in enumerate(method):
        if not isinstance(entry, dict):
            raise ConfigError("a fault must be a mapping with a 'type'", file=file,
                              path=["method", i], fix=f"use one of {sorted(FAULT_TYPES)}")
        kind = entry.get("type")
        if not isinstance(kind, str) or kind not in FAULT_TYPES:
            import difflib

            close = difflib.get_close_matches(str(kind), FAULT_TYPES, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"unknown fault type {kind!r}", file=file,
                              path=["method", i, "type"],
                              fix=f"{hint}use one of {sorted(FAULT_TYPES)}")
        parse_model(entry, FAULT_TYPES[kind], file=file, path=["method", i])  # exact key paths


def load_experiment(source: str | Path | dict[str, Any]) -> tuple[ExperimentSpec, str | None]:
    """Parse an experiment from a YAML path (or a mapping); return (spec, file)."""
    if isinstance(source, dict):
        data, file = source, None
    else:
        data, file = load_yaml(source), str(source)
        if data is None:
            raise ConfigError("file is empty", file=file, fix="add 'title:' and 'method:'")
    _precheck(data, file)
    return parse_model(data, ExperimentSpec, file=file), file


def current_environment(env: str | None = None) -> str:
    return env or os.environ.get("RELIABILITY_ENV", "local")


def _host(value: str) -> str:
    try:
        parts = urlsplit(value if "://" in value else f"tcp://{value}")
        return parts.hostname or value
    except ValueError:  # e.g. an unclosed IPv6 bracket: no host we could allow
        return value


def check_experiment(spec: ExperimentSpec, pipeline: Pipeline | None, *,
                     file: str | None = None, env: str | None = None) -> None:
    """Targets exist (ConfigError) and lie inside the blast radius (BlastRadiusError).

    Declarations are checked first: a proxy that is not declared is a mistake in the file
    (ConfigError), a declared one outside the blast radius is a refusal."""
    if pipeline is not None:
        _check_targets(spec, pipeline, file)
    _check_proxies(spec, file)
    _check_blast_radius(spec, file, current_environment(env))


def _check_proxies(spec: ExperimentSpec, file: str | None) -> None:
    """With the embedded proxy every proxy a fault or rollback names is a target service."""
    names = [s.name for s in spec.target.services]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigError(f"service name {name!r} is used twice", file=file,
                              path=["target", "services", i, "name"],
                              fix="give each service its own name")
    if spec.target.mode != "local" or spec.target.proxy_api is not None:
        return  # proxies of an existing Toxiproxy server are not declared here
    refs: list[tuple[list[str | int], str | None]] = [
        (["method", i, "proxy"], f.proxy) for i, f in enumerate(spec.method)
        if isinstance(f, NetworkFault)]
    refs += [(["rollbacks", i, "proxy"], r.proxy) for i, r in enumerate(spec.rollbacks)]
    for where, proxy in refs:
        if proxy is not None and proxy not in names:
            raise ConfigError(f"proxy {proxy!r} is not a service of the target", file=file,
                              path=where, fix=f"use one of {names}, or add it under "
                              "target.services" if names else "declare it under target.services")


def _check_params(spec: ExperimentSpec, pipeline: Pipeline, file: str | None) -> None:
    """``params`` and the services' ``param`` name parameters the pipeline has."""
    model: Any = pipeline.params_model
    fields = getattr(model, "model_fields", None)
    if fields is None or model.model_config.get("extra") == "allow":
        return
    known = sorted(fields)
    refs: list[tuple[list[str | int], str | None]] = [(["params", k], k) for k in spec.params]
    refs += [(["target", "services", i, "param"], s.param)
             for i, s in enumerate(spec.target.services)]
    for where, name in refs:
        if name is not None and name not in fields:
            raise ConfigError(f"pipeline {pipeline.name!r} has no parameter {name!r}",
                              file=file, path=where, fix=f"use one of {known}")


def _check_targets(spec: ExperimentSpec, pipeline: Pipeline, file: str | None) -> None:
    _check_params(spec, pipeline, file)
    steps = pipeline.steps
    external = spec.target.mode == "external"
    for i, f in enumerate(spec.method):
        where: list[str | int] = ["method", i]
        if external and not isinstance(f, NetworkFault):
            raise ConfigError(f"fault type {f.type!r} needs the pipeline to run here", file=file,
                              path=[*where, "type"], fix="in target.mode external only "
                              "'network' faults reach the pipeline; use mode: local")
        if f.step is not None and f.step not in steps and not external:
            raise ConfigError(f"step {f.step!r} is not a step of pipeline {pipeline.name!r}",
                              file=file, path=[*where, "step"],
                              fix=f"use one of {sorted(steps)}")
        if isinstance(f, Hang) and f.seconds is None and f.step and not steps[f.step].timeout:
            raise ConfigError(f"a hang of step {f.step!r} without 'seconds' never ends: the "
                              "step has no timeout", file=file, path=[*where, "seconds"],
                              fix="give the hang 'seconds', or the step a timeout=")
        if isinstance(f, DataFault) and f.input is not None and f.step:
            params = steps[f.step].inputs
            if f.input not in params:
                raise ConfigError(f"step {f.step!r} has no input {f.input!r}", file=file,
                                  path=[*where, "input"], fix=f"use one of {sorted(params)}")
        if isinstance(f, NetworkFault) and f.step is None and f.attempts != [1]:
            raise ConfigError("'attempts' applies to step-scoped network faults only",
                              file=file, path=[*where, "attempts"],
                              fix="set 'step', or drop 'attempts'")
    radius = spec.blast_radius.steps
    for i, s in enumerate(radius or []):
        if s not in steps:
            raise ConfigError(f"step {s!r} is not a step of pipeline {pipeline.name!r}",
                              file=file, path=["blast_radius", "steps", i],
                              fix=f"use one of {sorted(steps)}")


def _check_blast_radius(spec: ExperimentSpec, file: str | None, env: str) -> None:
    br = spec.blast_radius
    where = f" ({file})" if file else ""
    if env not in br.environments:
        raise _refused(
            f"environment {env!r} is outside the blast radius {br.environments}{where}. "
            "Fix: run where the experiment is allowed (RELIABILITY_ENV), or add the "
            "environment to blast_radius.environments")
    hosts = set(br.hosts)
    proxies = set(br.proxies if br.proxies is not None else
                  [s.name for s in spec.target.services])
    for i, f in enumerate(spec.method):
        if f.step is not None and br.steps is not None and f.step not in br.steps:
            raise _refused(
                f"method[{i}] ({f.name}) aims at step {f.step!r}, outside the blast radius "
                f"steps {br.steps}{where}. Fix: add it to blast_radius.steps or retarget")
        if isinstance(f, NetworkFault) and f.proxy not in proxies:
            raise _refused(
                f"method[{i}] ({f.name}) aims at proxy {f.proxy!r}, outside the blast radius "
                f"proxies {sorted(proxies)}{where}. Fix: add it to blast_radius.proxies")
    _check_rollbacks(spec, proxies, where)
    # the proxies listen where the proxy server runs: loopback for the embedded one
    listen = f"{_host(spec.target.proxy_api) if spec.target.proxy_api else '127.0.0.1'}:1"
    addresses = [("target.proxy_api", spec.target.proxy_api)] + [
        (f"target.services[{i}].upstream", s.upstream)
        for i, s in enumerate(spec.target.services)] + [
        (f"target.services[{i}].url", s.url.format(listen=listen))
        for i, s in enumerate(spec.target.services)]
    for key, value in addresses:
        if value and _host(value) not in hosts:
            raise _refused(
                f"{key}={value!r}: host {_host(value)!r} is outside the blast radius hosts "
                f"{sorted(hosts)}{where}. Fix: list it in blast_radius.hosts if this "
                "experiment may reach it (loopback only by default)")


def _refused(message: str) -> BlastRadiusError:
    """The refusal, with a long value from the file cut in the middle."""
    return BlastRadiusError(shorten(message, 600))


def _check_rollbacks(spec: ExperimentSpec, proxies: set[str], where: str) -> None:
    """Rollbacks touch proxies too: each named proxy must lie inside the blast radius, and
    ``reset_proxy`` (which resets every proxy on the server) is for the experiment's own
    embedded server only; an existing server (``target.proxy_api``) may hold proxies of
    others, so there each proxy is rolled back by name instead."""
    for i, rb in enumerate(spec.rollbacks):
        if rb.proxy is not None and rb.proxy not in proxies:
            raise _refused(
                f"rollbacks[{i}].proxy={rb.proxy!r} ({rb.type}) is outside the blast radius "
                f"proxies {sorted(proxies)}{where}. Fix: add it to blast_radius.proxies, or "
                "roll back a proxy the experiment may touch")
        if rb.type == "reset_proxy" and spec.target.proxy_api is not None:
            raise _refused(
                f"rollbacks[{i}] (reset_proxy) would reset every proxy on the shared server "
                f"target.proxy_api={spec.target.proxy_api!r}, not only those in the blast "
                f"radius{where}. Fix: replace it with 'remove_toxics' and 'enable_proxy' "
                "rollbacks naming each proxy (reset_proxy is allowed with the embedded proxy "
                "server only)")
