"""The small event vocabulary that every HTTP/1.1 parser engine produces.

Events are plain ``__slots__`` classes rather than dataclasses: one is built per request
and per body chunk on the hot path, and slot classes are the cheapest Python objects that
still have names.
"""

from __future__ import annotations

from dataclasses import dataclass

Headers = list[tuple[bytes, bytes]]
"""Header fields in arrival order; names lowercased, values as received (no OWS)."""


class RequestHead:
    """A complete request line and header section."""

    __slots__ = (
        "chunked",
        "content_length",
        "expect_continue",
        "headers",
        "host",
        "http_version",
        "keep_alive",
        "method",
        "target",
        "upgrade",
    )

    def __init__(
        self,
        method: str,
        target: bytes,
        http_version: str,
        headers: Headers,
        keep_alive: bool,
        content_length: int | None,
        chunked: bool,
        expect_continue: bool,
        upgrade: bytes | None,
        host: str | None = None,
    ) -> None:
        self.method = method
        self.host = host
        self.target = target
        self.http_version = http_version
        self.headers = headers
        self.keep_alive = keep_alive
        self.content_length = content_length
        self.chunked = chunked
        self.expect_continue = expect_continue
        self.upgrade = upgrade

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    def __repr__(self) -> str:
        return f"<RequestHead {self.method} {self.target!r} HTTP/{self.http_version}>"


class BodyChunk:
    """A piece of the request body, already de-chunked."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class MessageEnd:
    """The request (head and body) is complete; ``trailers`` holds chunked trailer fields."""

    __slots__ = ("trailers",)

    def __init__(self, trailers: Headers | None = None) -> None:
        self.trailers = trailers


Event = RequestHead | BodyChunk | MessageEnd


class ProtocolError(Exception):
    """The peer broke the protocol; ``status`` is the response to send before closing."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ParserLimits:
    """Bounds on what one request may make a parser hold (memory and work)."""

    max_uri_length: int = 8192
    max_header_size: int = 16384
    max_headers: int = 100
    max_body_size: int = 100 * 1024 * 1024
