"""A request's body: its content type, its bounded read, and what its JSON may not hold.

A body is read under two bounds, its size (413) and its time (408): a chunked body that never
ends, one shorter than its ``Content-Length`` or an HTTP/2 DATA stream left open would
otherwise hold its connection and its memory until shutdown. Hypercorn's own ``read_timeout``
is not the answer: it would also end long SSE streams whose clients send nothing.
"""

from __future__ import annotations

from typing import Any

import anyio
from starlette.datastructures import Headers
from starlette.types import Message, Receive

from .errors import ClientGone, PayloadTooLarge, RequestTimeout, UnsupportedMediaType

__all__ = ["BodyReceive", "ambiguous_framing", "check_content_type", "lone_surrogate", "read_body"]


class BodyReceive:
    """An ASGI ``receive`` that notes when the request body has been read to its end.

    Hypercorn (0.18) drops a whole HTTP/2 connection, every other stream on it included, when
    DATA arrives for a stream whose answer it has finished; an error answered before the body
    was read (404, 405, 401, 415, 413) must therefore read the rest of it first
    (:meth:`discard_rest`).
    """

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.complete = False

    async def __call__(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            self.complete = True
        return message

    async def discard_rest(self, seconds: float) -> None:
        """Read and drop what is left of the body, for at most ``seconds``."""
        with anyio.move_on_after(seconds):
            while not self.complete:
                await self()


def check_content_type(headers: Headers) -> None:
    """:raises UnsupportedMediaType: the body is not declared ``application/json``.

    A missing ``Content-Type`` is refused too: a web page on any origin may send a POST
    without one and without a CORS preflight, so accepting it would let any site start
    generations on a server without API keys.
    """
    kind = headers.get("content-type")
    if kind is None:
        raise UnsupportedMediaType(
            "Content-Type must be application/json; the request has none.",
            code="unsupported_media_type",
        )
    if kind.split(";")[0].strip().lower() != "application/json":
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, not {kind!r}.", code="unsupported_media_type"
        )


async def read_body(receive: Receive, limit: int, seconds: float) -> bytes:
    """The whole body, at most ``limit`` bytes, read within ``seconds``.

    :raises PayloadTooLarge: longer than ``limit``.
    :raises RequestTimeout: not complete after ``seconds`` (408).
    :raises ClientGone: the client went away while sending it.
    """
    chunks: list[bytes] = []
    size = 0
    with anyio.move_on_after(seconds):
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone("the client went away while sending its request body")
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(
                    f"The request body exceeds {limit} bytes.", code="request_too_large"
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
    raise RequestTimeout(
        f"The request body was not received within {seconds:g} seconds.", code="request_timeout"
    )


def ambiguous_framing(headers: Headers) -> bool:
    """Both ``Content-Length`` and ``Transfer-Encoding``: RFC 9112 section 6.3 reads the body
    by the latter but requires the connection closed after the response, since an
    intermediary may have read it by the former (request smuggling)."""
    return "content-length" in headers and "transfer-encoding" in headers


def lone_surrogate(data: Any) -> str | None:
    """The path (``messages[0].content``, ``tools[1].function.name``) of the first string in
    ``data`` (a key or a value) that holds a lone UTF-16 surrogate, or None."""
    pending: list[tuple[str, Any]] = [("", data)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, str):
            if not _is_text(value):
                return path
        elif isinstance(value, dict):
            for key, item in value.items():
                if not _is_text(key):  # named with the surrogate escaped: the path is text
                    named = key.encode("utf-8", "backslashreplace").decode()
                    return f"{path}.{named}" if path else named
                pending.append((f"{path}.{key}" if path else key, item))
        elif isinstance(value, list):
            pending.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
    return None


def _is_text(value: str) -> bool:
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True
