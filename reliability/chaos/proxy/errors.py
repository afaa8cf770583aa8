"""Errors of the embedded Toxiproxy-compatible server.

:class:`ApiError` carries an HTTP status and renders as Toxiproxy's error body
``{"error": "...", "status": N}``. The factory functions below produce the same
messages Toxiproxy 2.x uses, so clients that match on them keep working.
"""

from __future__ import annotations

from typing import Any

from reliability.errors import ChaosError

__all__ = [
    "ApiError",
    "ProxyServerError",
    "bad_request",
    "invalid_stream",
    "invalid_toxic_type",
    "missing_field",
    "proxy_exists",
    "proxy_not_found",
    "toxic_exists",
    "toxic_not_found",
]


class ProxyServerError(ChaosError):
    """The embedded proxy server could not start, stop or run a command."""


class ApiError(ChaosError):
    """An error answered over the HTTP API with ``status``."""

    def __init__(self, message: str, status: int) -> None:
        self.message = message
        self.status = status
        super().__init__(message)

    def body(self) -> dict[str, Any]:
        """The JSON error body Toxiproxy sends."""
        return {"error": self.message, "status": self.status}


def bad_request(detail: str) -> ApiError:
    return ApiError(f"bad request body: {detail}", 400)


def missing_field(field: str) -> ApiError:
    return ApiError(f"missing required field: {field}", 400)


def invalid_stream() -> ApiError:
    return ApiError("stream was invalid, can be either upstream or downstream", 400)


def invalid_toxic_type() -> ApiError:
    return ApiError("invalid toxic type", 400)


def proxy_not_found() -> ApiError:
    return ApiError("proxy not found", 404)


def proxy_exists() -> ApiError:
    return ApiError("proxy already exists", 409)


def toxic_not_found() -> ApiError:
    return ApiError("toxic not found", 404)


def toxic_exists() -> ApiError:
    return ApiError("toxic already exists", 409)
