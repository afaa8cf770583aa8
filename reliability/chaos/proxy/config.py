"""Load proxy definitions in Toxiproxy's own JSON config format.

The file is what ``toxiproxy-server -config FILE`` reads: a JSON list of
``{"name", "listen", "upstream", "enabled"?}`` objects. Problems raise
:class:`~reliability.errors.ConfigError` naming the file, the key path
(``[2].upstream``) and the fix.
"""

from __future__ import annotations

import json
from pathlib import Path

from reliability.chaos.proxy.errors import ApiError
from reliability.chaos.proxy.registry import FieldError, ProxyInput, parse_proxy_list
from reliability.errors import ConfigError

__all__ = ["EXAMPLE", "load_config", "validate_proxies"]

EXAMPLE = '[{"name": "redis", "listen": "127.0.0.1:26379", "upstream": "127.0.0.1:6379"}]'


def load_config(path: str | Path) -> list[ProxyInput]:
    """Read and validate a Toxiproxy config file."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"cannot read proxy config: {reason}", file=source,
                          fix="pass an existing, readable UTF-8 JSON file") from exc
    fix = f"write a JSON list of proxies, e.g. {EXAMPLE}"
    try:
        data = json.loads(text, parse_constant=_no_constant, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
                          file=source, fix=fix) from exc
    except RecursionError:
        raise ConfigError("JSON nested too deeply", file=source, fix=fix) from None
    except ValueError as exc:  # a duplicate key, NaN/Infinity, an integer of 4300+ digits
        raise ConfigError(str(exc), file=source, fix=fix) from None
    return validate_proxies(data, source=source)


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    seen: dict[str, object] = {}
    for key, value in pairs:
        if key in seen:
            shown = key if len(key) <= 40 else key[:40] + "..."
            raise ValueError(f"duplicate key {shown!r} in one proxy entry")
        seen[key] = value
    return seen


def validate_proxies(data: object, *, source: str | None = None) -> list[ProxyInput]:
    """Validate a list of proxy definitions, raising ConfigError on the first problem."""
    if not isinstance(data, list):
        raise ConfigError("must be a JSON list of proxies", file=source,
                          fix=f"write a JSON list, e.g. {EXAMPLE}")
    try:
        return parse_proxy_list(data)
    except FieldError as exc:
        path: list[str | int] = [] if exc.index is None else [exc.index]
        if exc.key != "proxy":
            path.append(exc.key)
        reason = "missing required field" if exc.reason == "missing" else exc.reason
        raise ConfigError(reason, file=source, path=path, fix=exc.fix) from None
    except ApiError:
        raise ConfigError("must be a JSON list of proxies", file=source,
                          fix=f"write a JSON list, e.g. {EXAMPLE}") from None
