"""The collection of proxies behind the API: create, update, delete, populate, reset.

Input validation is shared with the config-file loader: :func:`parse_proxy_list`
raises :class:`FieldError` naming the entry index and key, which the API turns
into a 400 body and the CLI into a :class:`~reliability.errors.ConfigError`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reliability.chaos.proxy.errors import (
    ApiError,
    bad_request,
    proxy_exists,
    proxy_not_found,
)
from reliability.chaos.proxy.proxy import Proxy, split_address

__all__ = ["DEFAULT_LISTEN", "FieldError", "ProxyInput", "ProxyRegistry", "parse_proxy_list"]

DEFAULT_LISTEN = "127.0.0.1:0"
"""Listen address used when a proxy definition omits ``listen`` (loopback, free port)."""


class FieldError(ApiError):
    """A proxy definition field is missing or malformed (HTTP 400)."""

    def __init__(self, key: str, reason: str, fix: str, *, index: int | None = None) -> None:
        self.key = key
        self.index = index
        self.reason = reason
        self.fix = fix
        where = key if index is None else f"{key} at proxy {index + 1}"
        text = f"missing required field: {where}" if reason == "missing" else f"{where}: {reason}"
        super().__init__(text if reason == "missing" else f"bad request body: {text}", 400)


@dataclass(frozen=True, slots=True)
class ProxyInput:
    """A validated proxy definition."""

    name: str
    listen: str
    upstream: str
    enabled: bool = True


def parse_proxy(body: object, *, index: int | None = None) -> ProxyInput:
    """Validate one proxy definition (API body or config-file entry)."""
    if not isinstance(body, Mapping):
        raise FieldError("proxy", "must be a JSON object", "write {\"name\": ..., "
                         "\"listen\": \"127.0.0.1:0\", \"upstream\": \"host:port\"}", index=index)
    name = _text(body, "name", index, required=True)
    upstream = _text(body, "upstream", index, required=True)
    listen = _text(body, "listen", index, required=False) or DEFAULT_LISTEN
    for key, value in (("upstream", upstream), ("listen", listen)):
        try:
            split_address(value)
        except ApiError:
            raise FieldError(key, f"{value!r} is not host:port", "use e.g. \"127.0.0.1:6379\"",
                             index=index) from None
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise FieldError("enabled", "must be true or false", "use a JSON boolean", index=index)
    return ProxyInput(name, listen, upstream, enabled)


def parse_proxy_list(body: object) -> list[ProxyInput]:
    """Validate a populate body / config file: a list of proxies with unique names."""
    if not isinstance(body, list):
        raise bad_request("expected a JSON list of proxies")
    parsed = [parse_proxy(entry, index=index) for index, entry in enumerate(body)]
    seen: set[str] = set()
    for index, proxy in enumerate(parsed):
        if proxy.name in seen:
            raise FieldError("name", f"duplicate proxy name {proxy.name!r}",
                             "give every proxy a unique name", index=index)
        seen.add(proxy.name)
    return parsed


def _text(body: Mapping[str, Any], key: str, index: int | None, *, required: bool) -> str:
    value = body.get(key)
    if value is None or value == "":
        if required:
            raise FieldError(key, "missing", f"add a non-empty \"{key}\" string", index=index)
        return ""
    if not isinstance(value, str):
        raise FieldError(key, "must be a string", f"quote the {key} value", index=index)
    return value


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
        spec = parse_proxy(body)
        async with self._lock:
            if spec.name in self._proxies:
                raise proxy_exists()
            return self._add(spec)

    def _add(self, spec: ProxyInput) -> Proxy:
        proxy = Proxy(spec.name, spec.listen, spec.upstream, self.rng)
        if spec.enabled:
            proxy.start()
        self._proxies[spec.name] = proxy
        return proxy

    async def update(self, name: str, body: object) -> Proxy:
        if not isinstance(body, Mapping):
            raise bad_request("expected a JSON object")
        async with self._lock:
            proxy = self.get(name)
            merged = {"name": name, "listen": proxy.listen, "upstream": proxy.upstream,
                      "enabled": proxy.enabled, **{k: v for k, v in body.items() if k != "name"}}
            spec = parse_proxy(merged)
            await proxy.update(spec.listen, spec.upstream, spec.enabled)
            return proxy

    async def delete(self, name: str) -> None:
        async with self._lock:
            proxy = self.get(name)
            del self._proxies[name]
            await proxy.stop()

    async def populate(self, body: object) -> list[Proxy]:
        """Create or replace the listed proxies (all validated before any change)."""
        return await self.populate_specs(parse_proxy_list(body))

    async def populate_specs(self, specs: list[ProxyInput]) -> list[Proxy]:
        """Create or replace already-validated proxy definitions."""
        result: list[Proxy] = []
        async with self._lock:
            for spec in specs:
                result.append(await self._add_or_replace(spec))
        return result

    async def _add_or_replace(self, spec: ProxyInput) -> Proxy:
        existing = self._proxies.get(spec.name)
        if existing is not None:
            if existing.listen == spec.listen and existing.upstream == spec.upstream:
                return existing
            del self._proxies[spec.name]
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
