"""The collection of proxies behind the API: create, update, delete, populate, reset.

Input validation is shared with the config-file loader: :func:`parse_proxy_list`
raises :class:`FieldError` naming the entry index and key, which the API turns
into a 400 body and the CLI into a :class:`~reliability.errors.ConfigError`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from typing import Any

from reliability._record import record
from reliability.chaos.proxy.decode import Fields, type_error
from reliability.chaos.proxy.errors import ApiError, proxy_exists, proxy_not_found
from reliability.chaos.proxy.proxy import Proxy, split_address

__all__ = ["DEFAULT_LISTEN", "FieldError", "PopulateError", "ProxyInput", "ProxyRegistry",
           "parse_proxy", "parse_proxy_list"]

DEFAULT_LISTEN = "127.0.0.1:0"
"""Listen address used when a proxy definition omits ``listen`` (loopback, free port)."""

_SHAPE = "write {\"name\": ..., \"listen\": \"127.0.0.1:0\", \"upstream\": \"host:port\"}"


class FieldError(ApiError):
    """A proxy definition field is missing or malformed (HTTP 400).

    ``key``, ``index``, ``reason`` and ``fix`` feed the config loader's ConfigError;
    the API answers ``message`` (Toxiproxy's wording where it has one).
    """

    def __init__(self, key: str, reason: str, fix: str, *, index: int | None = None,
                 message: str | None = None) -> None:
        self.key = key
        self.index = index
        self.reason = reason
        self.fix = fix
        where = key if index is None else f"{key} at proxy {index + 1}"
        if message is None:
            message = (f"missing required field: {where}" if reason == "missing"
                       else f"bad request body: {where}: {reason}")
        super().__init__(message, 400)


class PopulateError(ApiError):
    """A populate stopped part way: ``proxies`` were created or kept before ``message``."""

    def __init__(self, error: ApiError, proxies: list[Proxy]) -> None:
        super().__init__(error.message, error.status)
        self.proxies = proxies


@record(frozen=True, slots=True)
class ProxyInput:
    """A validated proxy definition."""

    name: str
    listen: str
    upstream: str
    enabled: bool = True


@record(frozen=True, slots=True)
class _Typed:
    """A proxy definition whose fields have the right JSON types (None: absent or null)."""

    name: str | None
    listen: str | None
    upstream: str | None
    enabled: bool | None


def _typed(body: object, index: int | None) -> _Typed:
    """Go's decode step: each field's JSON type, unknown keys ignored, null kept as absent."""
    if body is None:
        body = {}
    if not isinstance(body, Mapping):
        error = type_error(body, "", "toxiproxy.Proxy")
        raise FieldError("proxy", "must be a JSON object", _SHAPE, index=index,
                         message=error.message)
    fields = Fields(body, "Proxy")
    values: dict[str, Any] = {}
    for key, getter, kind in (("name", fields.string, "a string"),
                              ("listen", fields.string, "a string"),
                              ("upstream", fields.string, "a string"),
                              ("enabled", fields.boolean, "true or false")):
        try:
            values[key] = getter(key)
        except ApiError as exc:
            fix = "use a JSON boolean" if key == "enabled" else f"quote the {key} value"
            raise FieldError(key, f"must be {kind}", fix, index=index,
                             message=exc.message) from None
    return _Typed(**values)


def _complete(typed: _Typed, index: int | None) -> ProxyInput:
    """Toxiproxy's required fields (name, then upstream), defaults for the rest."""
    name, upstream = typed.name, typed.upstream
    if not name:
        raise FieldError("name", "missing", 'add a non-empty "name" string', index=index)
    if not upstream:
        raise FieldError("upstream", "missing", 'add a non-empty "upstream" string', index=index)
    enabled = True if typed.enabled is None else typed.enabled
    return ProxyInput(name, typed.listen or DEFAULT_LISTEN, upstream, enabled)


def check_addresses(spec: ProxyInput, index: int | None = None) -> None:
    """``listen`` and ``upstream`` must be ``host:port`` (Toxiproxy fails later, or never)."""
    for key, value in (("upstream", spec.upstream), ("listen", spec.listen)):
        try:
            split_address(value)
        except ApiError:
            raise FieldError(key, f"{value!r} is not host:port", "use e.g. \"127.0.0.1:6379\"",
                             index=index) from None


def parse_proxy(body: object, *, index: int | None = None) -> ProxyInput:
    """Validate one proxy definition (API body or config-file entry)."""
    spec = _complete(_typed(body, index), index)
    check_addresses(spec, index)
    return spec


def parse_proxy_list(body: object, *, unique: bool = True) -> list[ProxyInput]:
    """Validate a populate body / config file: every entry's types first, then the rest.

    ``unique`` refuses a name given twice (config files); the API's populate allows it,
    the later entry replacing the earlier one as in Toxiproxy.
    """
    if body is None:
        return []
    if not isinstance(body, list):
        raise type_error(body, "", "[]struct { toxiproxy.Proxy; Enabled *bool }")
    typed = [_typed(entry, index) for index, entry in enumerate(body)]
    parsed = [_complete(entry, index) for index, entry in enumerate(typed)]
    for index, spec in enumerate(parsed):
        check_addresses(spec, index)
    seen: set[str] = set()
    for index, spec in enumerate(parsed):
        if unique and spec.name in seen:
            raise FieldError("name", f"duplicate proxy name {spec.name!r}",
                             "give every proxy a unique name", index=index)
        seen.add(spec.name)
    return parsed


class ProxyRegistry:
    """All proxies of one server; mutations are serialised by a lock."""

    def __init__(self, seed: int | None = None) -> None:
        self._proxies: dict[str, Proxy] = {}
        self.rng = random.Random(seed)  # one source per server; proxies share it
        self._lock = asyncio.Lock()

    def __len__(self) -> int:
        return len(self._proxies)

    def all(self) -> list[Proxy]:
        return list(self._proxies.values())

    def get(self, name: str) -> Proxy:
        try:
            return self._proxies[name]
        except KeyError:
            raise proxy_not_found() from None

    async def create(self, body: object) -> Proxy:
        """Toxiproxy's ProxyCreate: types, required fields, duplicate name (409), bind (500)."""
        spec = _complete(_typed(body, None), None)
        async with self._lock:
            if spec.name in self._proxies:
                raise proxy_exists()
            check_addresses(spec)
            return self._add(spec)

    def _add(self, spec: ProxyInput) -> Proxy:
        proxy = Proxy(spec.name, spec.listen, spec.upstream, self.rng)
        if spec.enabled:
            proxy.start()
        self._proxies[spec.name] = proxy
        return proxy

    async def update(self, name: str, body: object) -> Proxy:
        """Toxiproxy's ProxyUpdate: absent or null fields keep their value, ``name`` is ignored."""
        async with self._lock:
            proxy = self.get(name)
            typed = _typed(body, None)
            spec = ProxyInput(name, proxy.listen if typed.listen is None else typed.listen,
                              proxy.upstream if typed.upstream is None else typed.upstream,
                              proxy.enabled if typed.enabled is None else typed.enabled)
            check_addresses(spec)
            await proxy.update(spec.listen, spec.upstream, spec.enabled)
            return proxy

    async def delete(self, name: str) -> None:
        async with self._lock:
            proxy = self.get(name)
            del self._proxies[name]
            await proxy.stop()

    async def populate(self, body: object) -> list[Proxy]:
        """Create or replace the listed proxies; every entry is validated before any change.

        A failure part way (a bind, a lookup) raises :class:`PopulateError` carrying the
        proxies done before it, as Toxiproxy answers them.
        """
        return await self.populate_specs(parse_proxy_list(body, unique=False))

    async def populate_specs(self, specs: list[ProxyInput]) -> list[Proxy]:
        """Create or replace already-validated proxy definitions."""
        result: list[Proxy] = []
        async with self._lock:
            for spec in specs:
                try:
                    result.append(await self._add_or_replace(spec))
                except ApiError as exc:
                    raise PopulateError(exc, result) from exc
        return result

    async def _add_or_replace(self, spec: ProxyInput) -> Proxy:
        """Toxiproxy's AddOrReplace: an unchanged proxy (after resolving ``listen``) is kept
        as it is, toxics, connections and enabled state included; a changed one is stopped
        and replaced by a fresh one (kept, stopped, if the new one cannot start)."""
        existing = self._proxies.get(spec.name)
        if existing is not None:
            if not await existing.differs(spec.listen, spec.upstream):
                return existing
            await existing.stop()
        return self._add(spec)

    async def reset(self) -> None:
        """Re-enable every proxy and remove every toxic."""
        async with self._lock:
            for proxy in self._proxies.values():
                proxy.start()
                proxy.reset_toxics()

    async def close(self) -> None:
        async with self._lock:
            proxies, self._proxies = list(self._proxies.values()), {}
        for proxy in proxies:
            await proxy.stop()
