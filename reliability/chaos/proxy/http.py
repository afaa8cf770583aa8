"""A deliberately small HTTP/1.1 server core on asyncio streams.

Supports what an API client needs and nothing more: request line + headers,
``Content-Length`` or chunked request bodies, keep-alive (HTTP/1.1 default,
``Connection: close`` honoured, HTTP/1.0 closes unless asked to keep alive),
bounded header/body sizes, Go's ``net/http`` timeouts (60 s idle between requests,
15 s to read one request). A malformed request gets Go's plain-text answer
(``400 Bad Request: ...``) and the connection closes; every request gets a response.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import field
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote, urlsplit

from reliability._record import record
from reliability.chaos.proxy.decode import decode
from reliability.chaos.proxy.errors import ApiError, bad_request

__all__ = ["MAX_BODY", "MAX_HEADER", "ProtocolError", "Request", "Response",
           "go_json", "serve_connection"]

MAX_HEADER = 64 * 1024
MAX_BODY = 4 * 1024 * 1024
IDLE_TIMEOUT = 60.0
READ_TIMEOUT = 15.0

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CHUNK_SIZE = re.compile(rb"[0-9a-fA-F]{1,15}")
_BAD_ESCAPE = re.compile(r"%(?![0-9a-fA-F]{2})")


class ProtocolError(ApiError):
    """The request itself is malformed; answered in plain text, then the connection closes."""


@record(slots=True)
class Request:
    """A parsed HTTP request."""

    method: str
    target: str
    version: str
    headers: dict[str, str]
    body: bytes = b""

    def _split(self) -> tuple[str, str]:
        """(raw path, query); ``//x`` is a path, as in Go's ParseRequestURI, not a host."""
        if self.target.startswith("/"):
            path, _, query = self.target.partition("?")
            return path, query
        parts = urlsplit(self.target)
        return parts.path or "/", parts.query

    @property
    def path(self) -> str:
        """The decoded path (``%2F`` becomes ``/``, as in Go's ``URL.Path``)."""
        return unquote(self._split()[0], errors="replace")

    @property
    def query(self) -> str:
        return self._split()[1]

    @property
    def segments(self) -> list[str]:
        """Segments of the decoded path: ``/proxies/a/toxics`` -> ``['proxies', 'a', 'toxics']``."""
        return self.path.split("/")[1:]

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return connection == "keep-alive"
        return connection != "close"

    def json(self) -> Any:
        """The body's first JSON value; raise ApiError(400) like Toxiproxy's decoder."""
        return decode(self.body)


def go_json(payload: Any) -> bytes:
    """``payload`` as Go's ``json.Marshal`` writes it: compact, UTF-8, ``<>&`` escaped."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    return text.encode("utf-8", errors="replace")


@record(slots=True)
class Response:
    """An HTTP response; ``payload`` is JSON-encoded (Go's way) unless it is bytes."""

    status: int = 200
    payload: Any = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def text(cls, status: int, text: str) -> Response:
        """Go's ``http.Error``: plain text, a newline, ``nosniff``."""
        return cls(status, (text + "\n").encode("utf-8", errors="replace"),
                   "text/plain; charset=utf-8", {"X-Content-Type-Options": "nosniff"})

    @classmethod
    def error(cls, exc: ApiError) -> Response:
        """Toxiproxy's ``apiError``: the JSON body written through ``http.Error``."""
        if isinstance(exc, ProtocolError):
            phrase = f"{exc.status} {_phrase(exc.status)}"
            body = f"{phrase}: {exc.message}" if exc.message else phrase
            return cls(exc.status, body.encode("utf-8", errors="replace"),
                       "text/plain; charset=utf-8")
        return cls.text(exc.status, go_json(exc.body()).decode())

    def encode(self, keep_alive: bool, head_only: bool = False) -> bytes:
        """The response's bytes (``head_only``: a HEAD request's, headers without the body)."""
        if isinstance(self.payload, bytes):
            body = self.payload
        elif self.payload is None:
            body = b""
        else:
            body = go_json(self.payload)
        lines = [f"HTTP/1.1 {self.status} {_phrase(self.status)}"]
        if self.status not in (204, 304):
            lines.append(f"Content-Length: {len(body)}")
            if body:
                lines.append(f"Content-Type: {self.content_type}")
        lines.append(f"Connection: {'keep-alive' if keep_alive else 'close'}")
        lines += [f"{key}: {value}" for key, value in self.headers.items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", errors="replace")
        return head if head_only else head + body


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


Handler = Callable[[Request], Awaitable[Response]]
Headers = Callable[[], dict[str, str]]


async def read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None = None
) -> Request | None:
    """Read one request; ``None`` on a clean EOF between requests.

    With ``writer``, an ``Expect: 100-continue`` request (curl, large bodies) is
    answered with ``100 Continue`` before the body is read.
    """
    request = await read_head(reader)
    if request is not None:
        await read_body(request, reader, writer)
    return request


async def read_head(reader: asyncio.StreamReader) -> Request | None:
    """Read a request line and headers; ``None`` on a clean EOF between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise ProtocolError("truncated request headers", 400) from None
    except asyncio.LimitOverrunError:
        raise ProtocolError("", 431) from None
    return _parse_head(head)


async def read_body(request: Request, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter | None = None) -> None:
    """Read ``request``'s body into it (after ``100 Continue`` if it expects one)."""
    if writer is not None and request.headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.body = await _read_body(reader, request.headers)


def _parse_head(head: bytes) -> Request:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ProtocolError("malformed request line", 400)
    method, target, version = parts
    if not _TOKEN.fullmatch(method):
        raise ProtocolError("invalid method", 400)
    if not target.startswith(("/", "http://", "https://")) or (
            _BAD_ESCAPE.search(target.partition("?")[0])):
        raise ProtocolError("malformed request URI", 400)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.fullmatch(name):
            raise ProtocolError("malformed header line", 400)
        headers[name.lower()] = value.strip()
    return Request(method, target, version, headers)


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    encoding = headers.get("transfer-encoding")
    if encoding is not None:
        if encoding.lower() != "chunked":
            raise ProtocolError("unsupported transfer encoding", 501)
        return await _read_chunked(reader)
    raw = headers.get("content-length", "0")
    if not raw.isascii() or not raw.isdigit():
        raise ProtocolError("bad Content-Length", 400)
    length = int(raw)
    if length > MAX_BODY:
        raise ApiError("request body too large", 413)
    return await reader.readexactly(length) if length else b""


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size_line = (await reader.readuntil(b"\r\n"))[:-2].split(b";")[0].strip()
        if not _CHUNK_SIZE.fullmatch(size_line):
            raise bad_request("invalid byte in chunk length")
        size = int(size_line, 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass  # trailers
            return bytes(body)
        if len(body) + size > MAX_BODY:
            raise ApiError("request body too large", 413)
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise bad_request("malformed chunked encoding")


async def serve_connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: Handler,
    headers: Headers | None = None,
) -> None:
    """Serve requests on one connection until close, error or timeout.

    ``headers()`` adds headers to every response, including the answers to malformed
    requests. A request that cannot be read is answered, then the connection closes.
    """
    keep_alive = True
    while keep_alive:
        try:
            async with asyncio.timeout(IDLE_TIMEOUT):
                request = await read_head(reader)
            if request is None:
                return
            async with asyncio.timeout(READ_TIMEOUT):
                await read_body(request, reader, writer)
        except ApiError as exc:
            await _respond(writer, Response.error(exc), headers, keep_alive=False)
            return
        except (TimeoutError, asyncio.IncompleteReadError):
            return
        except asyncio.LimitOverrunError:  # a chunk-size line longer than the buffer
            await _respond(writer, Response.error(bad_request("chunk length line too long")),
                           headers, keep_alive=False)
            return
        keep_alive = request.keep_alive
        await _respond(writer, await handler(request), headers, keep_alive,
                       head_only=request.method == "HEAD")


async def _respond(writer: asyncio.StreamWriter, response: Response, headers: Headers | None,
                   keep_alive: bool, head_only: bool = False) -> None:
    if headers is not None:
        response.headers = {**headers(), **response.headers}
    writer.write(response.encode(keep_alive, head_only))
    await writer.drain()
