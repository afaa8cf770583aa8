"""A deliberately small HTTP/1.1 server core on asyncio streams.

Supports what an API client needs and nothing more: request line + headers,
``Content-Length`` or chunked request bodies, keep-alive (HTTP/1.1 default,
``Connection: close`` honoured, HTTP/1.0 closes unless asked to keep alive),
bounded header/body sizes and an idle timeout. Responses always carry
``Content-Length``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote, urlsplit

from reliability.chaos.proxy.errors import ApiError

__all__ = ["MAX_BODY", "MAX_HEADER", "Request", "Response", "serve_connection"]

MAX_HEADER = 64 * 1024
MAX_BODY = 4 * 1024 * 1024
IDLE_TIMEOUT = 60.0


@dataclass(slots=True)
class Request:
    """A parsed HTTP request."""

    method: str
    target: str
    version: str
    headers: dict[str, str]
    body: bytes = b""

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def segments(self) -> list[str]:
        """Decoded path segments: ``/proxies/a%2Fb/toxics`` -> ``['proxies', 'a/b', 'toxics']``."""
        path = self.path.strip("/")
        return [unquote(part) for part in path.split("/")] if path else []

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return connection == "keep-alive"
        return connection != "close"

    def json(self) -> Any:
        """The body decoded as JSON; raise ApiError(400) like Toxiproxy's decoder."""
        if not self.body.strip():
            raise ApiError("bad request body: EOF", 400)
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(f"bad request body: {exc}", 400) from exc


@dataclass(slots=True)
class Response:
    """An HTTP response; ``payload`` is JSON-encoded unless it is bytes."""

    status: int = 200
    payload: Any = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def error(cls, exc: ApiError) -> Response:
        return cls(exc.status, exc.body())

    def encode(self, keep_alive: bool) -> bytes:
        if isinstance(self.payload, bytes):
            body = self.payload
        elif self.payload is None:
            body = b""
        else:
            body = (json.dumps(self.payload) + "\n").encode()
        reason = HTTPStatus(self.status).phrase
        lines = [f"HTTP/1.1 {self.status} {reason}", f"Content-Length: {len(body)}"]
        if body:
            lines.append(f"Content-Type: {self.content_type}")
        lines.append(f"Connection: {'keep-alive' if keep_alive else 'close'}")
        lines += [f"{key}: {value}" for key, value in self.headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


Handler = Callable[[Request], Awaitable[Response]]


async def read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None = None
) -> Request | None:
    """Read one request; ``None`` on a clean EOF between requests.

    With ``writer``, an ``Expect: 100-continue`` request (curl, large bodies) is
    answered with ``100 Continue`` before the body is read.
    """
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise ApiError("malformed request: truncated headers", 400) from None
    except asyncio.LimitOverrunError:
        raise ApiError("request headers too large", 431) from None
    request = _parse_head(head)
    if writer is not None and request.headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.body = await _read_body(reader, request.headers)
    return request


def _parse_head(head: bytes) -> Request:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ApiError("malformed request line", 400)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise ApiError("malformed header line", 400)
        headers[name.strip().lower()] = value.strip()
    return Request(parts[0].upper(), parts[1], parts[2], headers)


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await _read_chunked(reader)
    raw = headers.get("content-length", "0")
    if not raw.isdigit():
        raise ApiError("invalid Content-Length", 400)
    length = int(raw)
    if length > MAX_BODY:
        raise ApiError("request body too large", 413)
    return await reader.readexactly(length) if length else b""


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size_line = (await reader.readuntil(b"\r\n")).split(b";")[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise ApiError("malformed chunk size", 400) from None
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass  # trailers
            return bytes(body)
        if len(body) + size > MAX_BODY:
            raise ApiError("request body too large", 413)
        body += await reader.readexactly(size)
        await reader.readexactly(2)


async def serve_connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: Handler
) -> None:
    """Serve requests on one connection until close, error or idle timeout."""
    keep_alive = True
    while keep_alive:
        try:
            async with asyncio.timeout(IDLE_TIMEOUT):
                request = await read_request(reader, writer)
        except ApiError as exc:
            writer.write(Response.error(exc).encode(keep_alive=False))
            await writer.drain()
            return
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        if request is None:
            return
        keep_alive = request.keep_alive
        response = await handler(request)
        writer.write(response.encode(keep_alive))
        await writer.drain()
