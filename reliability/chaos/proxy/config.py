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
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
                          file=source, fix=f"write a JSON list of proxies, e.g. {EXAMPLE}") from exc
    return validate_proxies(data, source=source)


def validate_proxies(data: object, *, source: str | None = None) -> list[ProxyInput]:
    """Validate a list of proxy definitions, raising ConfigError on the first problem."""
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
